"""tools/train.py, tools/test.py and the launch scripts on a toy mmengine model (CPU)."""
import glob
import importlib.util
import os
import os.path as osp
import pickle
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from argparse import Namespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from fdclip_mm.engine import is_cpu_only
from ..helpers.tools import (TOOLS, assert_same_weights, call, cpu_only, free_port, load_weights, refused, run,
                             tool_env, toy_modules, train)

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): toy_dir and full_run are built once
pytestmark = pytest.mark.xdist_group('test_train_tool')

#: The run lock of a work dir, as docs/en/advanced_guides/reliability.md names it.
LOCK_FILE = '.fdclip_run.lock'


@pytest.fixture(scope='module')
def toy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    toy_modules.write_toy_config(str(root / 'toy.py'), max_iters=8)
    toy_modules.write_toy_config(str(root / 'toy_4iters.py'), max_iters=4)
    return root


@pytest.fixture(scope='module')
def full_run(toy_dir):
    """8 uninterrupted iterations; returns the work dir."""
    train(toy_dir, 'toy.py', '--work-dir', 'full')
    return toy_dir / 'full'


@pytest.mark.slow
def test_train_writes_checkpoints(full_run):
    assert {'iter_4.pth', 'iter_8.pth', 'last_checkpoint', 'weights_rank0.pth'} <= set(os.listdir(full_run))
    ckpt = torch.load(full_run / 'iter_8.pth', weights_only=True)
    assert ckpt['meta']['iter'] == 8
    assert_same_weights(ckpt['state_dict'], load_weights(full_run / 'weights_rank0.pth'))


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(toy_dir, full_run):
    """Stop after 4 of 8 iterations, ``--resume`` from the work dir: same weights as without the stop."""
    train(toy_dir, 'toy_4iters.py', '--work-dir', 'split')
    assert not osp.exists(toy_dir / 'split' / 'iter_8.pth')
    proc = train(toy_dir, 'toy.py', '--work-dir', 'split', '--resume')
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr
    expected = load_weights(full_run / 'weights_rank0.pth')
    assert_same_weights(load_weights(toy_dir / 'split' / 'weights_rank0.pth'), expected)


@pytest.mark.slow
@cpu_only
def test_a_refused_run_writes_nothing(toy_dir, full_run, tmp_path):
    """Refused before the runner is built: no log folder, the earlier run's config dump untouched, one line."""
    work_dir = tmp_path / 'earlier'
    shutil.copytree(full_run, work_dir)
    before = sorted(os.listdir(work_dir))
    dump = (work_dir / 'toy.py').read_text()
    proc = call([
        sys.executable,
        osp.join(TOOLS, 'train.py'), 'toy.py', '--work-dir', work_dir, '--cfg-options',
        'optim_wrapper.optimizer.lr=5e-4'
    ], toy_dir)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f'[error] {work_dir} already holds a run (iter_8.pth, iter_4.pth, last_checkpoint) that this run would '
        'overwrite. Continue it with --resume, choose another --work-dir, or pass --overwrite to replace it'
    ]
    assert sorted(os.listdir(work_dir)) == before and (work_dir / 'toy.py').read_text() == dump


@pytest.mark.slow
def test_dist_train_two_cpu_processes(toy_dir, full_run):
    """tools/dist_train.sh with 2 ranks on CPU (gloo): both ranks end with identical weights."""
    run([osp.join(TOOLS, 'dist_train.sh'), 'toy.py', 2, '--work-dir', 'dist'],
        toy_dir,
        PORT=str(free_port()),
        PYTHON=sys.executable)
    rank0 = load_weights(toy_dir / 'dist' / 'weights_rank0.pth')
    assert_same_weights(load_weights(toy_dir / 'dist' / 'weights_rank1.pth'), rank0)
    # each rank saw half of every batch, so this is not the single-process run
    single = load_weights(full_run / 'weights_rank0.pth')
    assert not torch.equal(rank0['linear.weight'], single['linear.weight'])
    cfg = Config.fromfile(toy_dir / 'dist' / 'toy.py')
    assert cfg.model_wrapper_cfg.device_ids is None and cfg.launcher == 'pytorch'


@pytest.mark.slow
@cpu_only
def test_amp_on_cpu_uses_bfloat16_when_asked(toy_dir, full_run):
    """An explicit bf16 request is honoured on any CPU (the suite's 'auto' is fp32, see conftest)."""
    train(toy_dir, 'toy_4iters.py', '--work-dir', 'amp', '--amp', '--cfg-options', 'optim_wrapper.dtype=bfloat16')
    cfg = Config.fromfile(toy_dir / 'amp' / 'toy_4iters.py')
    assert cfg.optim_wrapper.type == 'fdclip_mm.CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    weights = load_weights(toy_dir / 'amp' / 'weights_rank0.pth')
    fp32 = torch.load(full_run / 'iter_4.pth', weights_only=True)['state_dict']
    assert weights['linear.weight'].dtype == torch.float32
    assert not torch.equal(weights['linear.weight'], fp32['linear.weight'])  # bf16 matmuls differ
    torch.testing.assert_close(weights['linear.weight'], fp32['linear.weight'], atol=0.1, rtol=0.1)


@pytest.mark.slow
def test_test_tool_dumps_predictions(toy_dir, full_run):
    run([
        sys.executable,
        osp.join(TOOLS, 'test.py'), 'toy.py', full_run / 'iter_8.pth', '--work-dir', 'test_single', '--out',
        'test_single/preds.pkl'
    ], toy_dir)
    with open(toy_dir / 'test_single' / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 16 and set(preds[0]) == {'pred', 'target'}


FAKE_SRUN = r"""#!/usr/bin/env bash
# Minimal srun stand-in: records its arguments, starts --ntasks copies of the command locally.
echo "$@" > "$(dirname "$0")/srun_args.txt"
ntasks=1
while [[ $# -gt 0 && "$1" == -* ]]; do
    case "$1" in
        -p) shift 2 ;;
        --ntasks=*) ntasks="${1#--ntasks=}"; shift ;;
        *) shift ;;
    esac
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks SLURM_NODELIST=fake-node "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""


def write_executable(path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.slow
@cpu_only
def test_slurm_test_two_cpu_tasks(toy_dir, full_run, tmp_path):
    """tools/slurm_test.sh with a local srun stand-in: 2 tasks, predictions gathered from both."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    write_executable(bin_dir / 'srun', FAKE_SRUN)
    write_executable(bin_dir / 'scontrol', '#!/bin/sh\necho 127.0.0.1\n')
    run([
        osp.join(TOOLS, 'slurm_test.sh'), 'cpu', 'toy', 'toy.py', full_run / 'iter_8.pth', '--work-dir', 'test_slurm',
        '--out', 'test_slurm/preds.pkl'
    ],
        toy_dir,
        PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
        PYTHON=sys.executable,
        GPUS='2',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='1',
        GRES='',
        MASTER_PORT=str(free_port()))
    srun_args = (bin_dir / 'srun_args.txt').read_text()
    assert '--ntasks=2' in srun_args and '--gres' not in srun_args and '--launcher=slurm' in srun_args
    with open(toy_dir / 'test_slurm' / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 16


@pytest.mark.slow
def test_ctrl_c_prints_one_line_with_the_checkpoint_and_the_resume_command(toy_dir):
    toy_modules.write_toy_config(str(toy_dir / 'toy_long.py'), max_iters=10**7)
    work_dir = toy_dir / 'ctrl_c'
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'), 'toy_long.py', '--work-dir', 'ctrl_c']
    proc = subprocess.Popen(
        cmd, cwd=toy_dir, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (work_dir / 'last_checkpoint').exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    assert 'Traceback' not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f'Interrupted. Last checkpoint: {work_dir}/iter_') and line.endswith(
        f'Continue with: python {TOOLS}/train.py toy_long.py --work-dir ctrl_c --resume'), line


def wait_for_holder(work_dir, procs, logs, timeout: float = 150) -> str:
    """The holder line of ``work_dir``'s run lock, once a run has taken it."""
    lock, deadline = work_dir / LOCK_FILE, time.time() + timeout
    while time.time() < deadline:
        text = lock.read_text().strip() if lock.exists() else ''
        if text:
            return text
        for proc, log in zip(procs, logs):
            assert proc.poll() is None, open(log).read()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f'no run took the lock of {work_dir}')


@pytest.mark.slow
@cpu_only
def test_a_two_node_job_is_one_run_and_another_run_in_its_work_dir_is_refused(toy_dir, full_run, tmp_path):
    """Two ``NNODES=2`` launches of dist_train.sh (one process each) are one job: rank 0 holds the work dir,
    the job trains; meanwhile an independent train, resume or test run into that work dir is refused."""
    go, work = tmp_path / 'go', tmp_path / 'multi'
    config = toy_modules.write_toy_config(str(tmp_path / 'toy_wait.py'), max_iters=8)
    with open(config, 'a') as f:
        f.write(f"custom_hooks = [dict(type='FdclipDumpWeightsHook'), dict(type='FdclipWaitForFileHook', "
                f"path='{go}')]\n")
    port, logs, nodes = str(free_port()), [str(tmp_path / f'node{r}.log') for r in (0, 1)], []
    try:
        for rank, log in enumerate(logs):
            nodes.append(
                subprocess.Popen([osp.join(TOOLS, 'dist_train.sh'), config, '1', '--work-dir', work],
                                 cwd=toy_dir,
                                 env=tool_env(NNODES='2', NODE_RANK=str(rank), PORT=port, PYTHON=sys.executable),
                                 stdout=open(log, 'w'),
                                 stderr=subprocess.STDOUT))
        holder = wait_for_holder(work, nodes, logs)
        assert 'toy_wait.py' in holder and '--launcher pytorch' in holder
        in_use = f'[error] {work} is in use by another run ({holder}); wait until it ends or choose another --work-dir'
        assert refused([sys.executable, osp.join(TOOLS, 'train.py'), 'toy.py', '--work-dir', work], toy_dir) == in_use
        assert refused([sys.executable,
                        osp.join(TOOLS, 'train.py'), 'toy.py', '--work-dir', work, '--resume'], toy_dir) == in_use
        assert refused(
            [sys.executable,
             osp.join(TOOLS, 'test.py'), 'toy.py', full_run / 'iter_8.pth', '--work-dir', work], toy_dir) == in_use
    finally:
        go.touch()
        for node in nodes:
            node.wait(timeout=300)
    assert [node.returncode for node in nodes] == [0, 0], open(logs[0]).read()[-3000:] + open(logs[1]).read()[-3000:]
    assert_same_weights(load_weights(work / 'weights_rank1.pth'), load_weights(work / 'weights_rank0.pth'))
    assert {'iter_4.pth', 'iter_8.pth', 'last_checkpoint'} <= set(os.listdir(work))


@pytest.mark.slow
def test_overwrite_sets_the_earlier_run_aside_where_resume_does_not_find_it(toy_dir, full_run, tmp_path):
    """Run A (8 iterations), then B --overwrite (4): A's files move to a dated folder; when B's checkpoint is
    cut short, --resume does not fall back to A's."""
    work = tmp_path / 'replaced'
    shutil.copytree(full_run, work)
    earlier = sorted(name for name in os.listdir(work) if name != LOCK_FILE)
    proc = train(toy_dir, 'toy_4iters.py', '--work-dir', work, '--overwrite')
    (aside, ) = glob.glob(str(work / 'earlier_run_*'))
    assert re.fullmatch(r'earlier_run_\d{8}_\d{6}', osp.basename(aside))
    assert sorted(os.listdir(aside)) == earlier  # nothing deleted
    assert f"overwrite: the earlier run's files are now in {aside} (kept; --resume does not look there)" in (
        proc.stdout + proc.stderr)
    assert not (work / 'iter_8.pth').exists() and (work / 'iter_4.pth').exists()
    checkpoint = work / 'iter_4.pth'
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    line = refused([sys.executable, osp.join(TOOLS, 'train.py'), 'toy.py', '--work-dir', work, '--resume'], toy_dir)
    assert line.startswith(f'[error] --resume: no readable checkpoint in {work}: {checkpoint} is truncated'), line
    proc = call([sys.executable, osp.join(TOOLS, 'train.py'), 'toy.py', '--overwrite', '--resume'], toy_dir)
    assert proc.returncode == 2 and '--overwrite starts a new run and --resume continues one' in proc.stderr


@pytest.mark.slow
def test_a_work_dir_that_is_a_file_gets_one_line(toy_dir, tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('x')
    line = refused([sys.executable, osp.join(TOOLS, 'train.py'), 'toy.py', '--work-dir', path], toy_dir)
    assert line == f'[error] work_dir {path} is a file, not a directory; choose another --work-dir'
    assert path.read_text() == 'x'


@pytest.mark.slow
def test_dist_scripts_check_their_arguments_and_the_interpreter_before_torchrun(toy_dir, full_run):
    train_script, test_script = osp.join(TOOLS, 'dist_train.sh'), osp.join(TOOLS, 'dist_test.sh')
    python = dict(PYTHON=sys.executable)
    cases = [
        ([train_script, 'missing.py', '2'], python, '[error] config file not found: missing.py'),
        ([train_script, 'toy.py', 'two'], python, "[error] NPROC_PER_NODE must be a positive integer, got 'two'"),
        ([train_script, 'toy.py', '2'], dict(PYTHON='no-such-python'),
         "[error] no Python interpreter 'no-such-python'; set PYTHON=/path/to/env/bin/python"),
        ([train_script, 'toy.py', '2'], dict(PYTHON='/bin/false'),
         '[error] /bin/false (/bin/false) cannot import torch and mmengine: activate the environment fdclip_mm is '
         'installed in, or set PYTHON=/path/to/env/bin/python'),
        ([test_script, 'toy.py', 'missing.pth', '2'], python, '[error] checkpoint file not found: missing.pth'),
    ]
    for cmd, env, line in cases:
        proc = call(cmd, toy_dir, PORT=str(free_port()), **env)
        assert (proc.returncode, proc.stderr.strip().splitlines()) == (1, [line]), (cmd, proc.stderr[-3000:])


# --------------------------------------------------------------------------- argument handling


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'fdclip_tools_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_args(**kwargs) -> Namespace:
    args = dict(
        config='configs/x/my_config.py',
        work_dir=None,
        resume=None,
        amp=False,
        no_validate=False,
        auto_scale_lr=False,
        cfg_options=None,
        launcher='none',
        overwrite=False)
    args.update(kwargs)
    return Namespace(**args)


def toy_cfg(toy_dir) -> Config:
    return Config.fromfile(toy_dir / 'toy.py')


def test_train_merge_args(toy_dir):
    tool = load_tool('train')
    cfg = tool.merge_args(toy_cfg(toy_dir), train_args())
    assert cfg.work_dir == osp.join('./work_dirs', 'my_config') and cfg.launcher == 'none'
    assert 'resume' not in cfg or not cfg.resume
    assert not cfg.get('overwrite', False)
    assert tool.merge_args(toy_cfg(toy_dir), train_args(overwrite=True)).overwrite is True

    cfg = tool.merge_args(toy_cfg(toy_dir), train_args(resume='auto', work_dir='w', launcher='pytorch'))
    assert cfg.resume is True and cfg.load_from is None and cfg.work_dir == 'w'
    cfg = tool.merge_args(toy_cfg(toy_dir), train_args(resume='a/iter_4.pth'))
    assert cfg.resume is True and cfg.load_from == 'a/iter_4.pth'

    cfg = tool.merge_args(
        toy_cfg(toy_dir), train_args(auto_scale_lr=True, no_validate=True, cfg_options={'train_cfg.max_iters': 3}))
    assert cfg.auto_scale_lr.enable is True and cfg.val_cfg is None and cfg.train_cfg.max_iters == 3
    no_scale = toy_cfg(toy_dir)
    no_scale.auto_scale_lr = None
    with pytest.raises(RuntimeError, match='auto_scale_lr'):
        tool.merge_args(no_scale, train_args(auto_scale_lr=True))


def test_train_amp_args(toy_dir):
    tool = load_tool('train')
    cfg = tool.merge_args(toy_cfg(toy_dir), train_args(amp=True))
    if is_cpu_only():  # bf16 where the CPU runs it natively, fp32 elsewhere
        assert cfg.optim_wrapper.type == 'fdclip_mm.CPUAmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'auto'
    else:  # bf16 without loss scaling on GPUs with native bf16, fp16 with dynamic loss scaling on older ones
        native = tuple(torch.cuda.get_device_capability()) >= (8, 0)
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == ('bfloat16' if native else 'float16')
    # an AmpOptimWrapper written in the config itself is adapted too
    cfg = tool.merge_args(
        toy_cfg(toy_dir),
        train_args(cfg_options={
            'optim_wrapper.type': 'AmpOptimWrapper',
            'optim_wrapper.dtype': 'float16'
        }))
    expected = 'fdclip_mm.CPUAmpOptimWrapper' if is_cpu_only() else 'AmpOptimWrapper'
    assert cfg.optim_wrapper.type == expected
    # the AMP form of a wrapper with the non-finite-loss policy has it too (CPUAmpOptimWrapper has it)
    checked = toy_cfg(toy_dir)
    checked.optim_wrapper.type = 'fdclip_mm.CheckedOptimWrapper'
    cfg = tool.merge_args(checked, train_args(amp=True))
    expected = 'fdclip_mm.CPUAmpOptimWrapper' if is_cpu_only() else 'fdclip_mm.CheckedAmpOptimWrapper'
    assert cfg.optim_wrapper.type == expected
    assert tool.amp_wrapper(dict(type='fdclip_mm.CheckedOptimWrapper')) == 'fdclip_mm.CheckedAmpOptimWrapper'
    assert tool.amp_wrapper(dict(constructor='fdclip_mm.TrainableOptimWrapperConstructor')) == \
        'fdclip_mm.CheckedAmpOptimWrapper'
    assert tool.amp_wrapper(dict(type='OptimWrapper')) == tool.amp_wrapper(dict()) == 'AmpOptimWrapper'


@pytest.mark.parametrize('gpu, dtype, loss_scale, log', [
    (('Tesla V100-SXM2-32GB',
      (7, 0)), 'float16', 'dynamic', "AMP dtype 'auto': float16 autocast with dynamic loss scaling on cuda "
     '(Tesla V100-SXM2-32GB, compute capability 7.0, no native bf16)'),
    (('NVIDIA H100 80GB HBM3', (9, 0)), 'bfloat16', {
        'enabled': False
    }, "AMP dtype 'auto': bfloat16 autocast with no loss scaling on cuda "
     '(NVIDIA H100 80GB HBM3, compute capability 9.0, native bf16)'),
])
def test_train_amp_on_fake_gpus(toy_dir, monkeypatch, gpu, dtype, loss_scale, log):
    """``--amp`` (or an AMP wrapper in the config) on CUDA, the GPU faked: the optimizer wrapper config, the log
    line, and that mmengine's ``AmpOptimWrapper`` takes the config (no CUDA call is made)."""
    from mmengine.optim import AmpOptimWrapper, build_optim_wrapper

    from fdclip_mm import precision
    name, capability = gpu
    MMLogger.get_current_instance()  # made under the fake, a logger would ask it for a device id
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)  # as on a V100
    messages = []
    monkeypatch.setattr(precision, 'print_log', lambda msg, **kwargs: messages.append(msg))
    precision._log_once.cache_clear()
    tool = load_tool('train')
    monkeypatch.setattr(tool, 'is_cpu_only', lambda: False)
    monkeypatch.setattr(tool, 'get_device', lambda: 'cuda')

    cfg = tool.merge_args(toy_cfg(toy_dir), train_args(amp=True))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == dtype and cfg.optim_wrapper.loss_scale == loss_scale
    assert messages == [log]
    # in the config: an unset or 'auto' dtype is resolved alike, the CPU wrapper becomes mmengine's with the
    # non-finite-loss policy that it has (fdclip_mm.CheckedAmpOptimWrapper)
    for options in ({
            'optim_wrapper.type': 'AmpOptimWrapper'
    }, {
            'optim_wrapper.type': 'AmpOptimWrapper',
            'optim_wrapper.dtype': 'auto'
    }, {
            'optim_wrapper.type': 'fdclip_mm.CPUAmpOptimWrapper',
            'optim_wrapper.dtype': 'auto'
    }):
        cfg = tool.merge_args(toy_cfg(toy_dir), train_args(cfg_options=options))
        checked = options['optim_wrapper.type'] == 'fdclip_mm.CPUAmpOptimWrapper'
        assert cfg.optim_wrapper.type == ('fdclip_mm.CheckedAmpOptimWrapper' if checked else 'AmpOptimWrapper'), options
        assert cfg.optim_wrapper.dtype == dtype and cfg.optim_wrapper.loss_scale == loss_scale, options
    explicit = tool.merge_args(toy_cfg(toy_dir), train_args(amp=True, cfg_options={'optim_wrapper.dtype': 'float16'}))
    assert explicit.optim_wrapper.dtype == 'float16' and explicit.optim_wrapper.loss_scale == 'dynamic'
    plain = tool.merge_args(toy_cfg(toy_dir), train_args())
    assert plain.optim_wrapper.type == 'OptimWrapper' and 'dtype' not in plain.optim_wrapper

    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype is getattr(torch, dtype)
    assert wrapper.loss_scaler.is_enabled() is (dtype == 'float16')
    precision._log_once.cache_clear()


def test_test_merge_args(toy_dir):
    tool = load_tool('test')
    args = Namespace(
        config='toy.py',
        checkpoint='c.pth',
        work_dir=None,
        out=None,
        amp=True,
        cfg_options=None,
        launcher='none',
        show_dir=None,
        show=False,
        wait_time=2,
        interval=1)
    cfg = tool.merge_args(toy_cfg(toy_dir), args)
    assert cfg.load_from == 'c.pth' and cfg.resume is False and cfg.test_cfg.fp16 is True
    assert cfg.work_dir == osp.join('./work_dirs', 'toy')


@pytest.mark.parametrize('dtype, hint', [('nonsense', ''), ('bf16', "; write 'bfloat16' for 'bf16'"),
                                         ('fp16', "; write 'float16' for 'fp16'")])
def test_train_refuses_unknown_amp_dtypes(toy_dir, dtype, hint):
    """They became 'auto' on CPUs; the names mmengine's AmpOptimWrapper takes (and 'auto') pass."""
    tool = load_tool('train')
    for config_type in ('AmpOptimWrapper', 'fdclip_mm.CPUAmpOptimWrapper'):
        with pytest.raises(
                ValueError,
                match=re.escape(f"optim_wrapper.dtype={dtype!r} is not a precision name: use one of ['auto', "
                                f"'float16', 'bfloat16', 'float32', 'float64'] or None{hint}") + '$'):
            tool.merge_args(
                toy_cfg(toy_dir),
                train_args(amp=True, cfg_options={
                    'optim_wrapper.type': config_type,
                    'optim_wrapper.dtype': dtype
                }))
    assert tool.merge_args(toy_cfg(toy_dir), train_args(amp=True, cfg_options={'optim_wrapper.dtype': 'bfloat16'}))
