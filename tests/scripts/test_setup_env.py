"""scripts/setup_env.sh's plan (scripts/setup_plan.py): CPU or CUDA torch, the mmcv build and its cache key.

Nothing is installed and nothing is downloaded: the GPU side is faked with an ``nvidia-smi`` and an ``nvcc`` on
PATH that print what real ones print, and ``setup_env.sh --print-plan`` shows the plan without acting on it.
"""
import importlib.util
import json
import os
import os.path as osp
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'scripts', 'setup_env.sh')
PLANNER = osp.join(REPO, 'scripts', 'setup_plan.py')
spec = importlib.util.spec_from_file_location('setup_plan', PLANNER)
setup_plan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_plan)
Gpu, PlanError = setup_plan.Gpu, setup_plan.PlanError

V100 = Gpu('Tesla V100-SXM2-32GB', (7, 0))
A100 = Gpu('NVIDIA A100-SXM4-80GB', (8, 0))
H100 = Gpu('NVIDIA H100 80GB HBM3', (9, 0))
TORCH_CU130 = dict(version='2.14.1+cu130', cuda='13.0', archs=list(setup_plan.DEFAULT_TORCH_ARCHS))
PY = f'cp{sys.version_info[0]}{sys.version_info[1]}'


def test_default_torch_facts_are_the_installed_wheels():
    """The constants the plan checks GPUs against are those of the pinned torch this suite runs on."""
    if torch.version.cuda is None or not torch.__version__.startswith('2.14.1'):
        pytest.skip(f'torch {torch.__version__} is not the pinned CUDA build')
    assert setup_plan._version_tuple(torch.version.cuda) == setup_plan.DEFAULT_TORCH_CUDA
    assert tuple(torch.cuda.get_arch_list()) == setup_plan.DEFAULT_TORCH_ARCHS


def test_which_gpus_a_torch_build_runs_on():
    archs = setup_plan.DEFAULT_TORCH_ARCHS
    assert not setup_plan.runs_on(archs, (7, 0))  # V100: no sm_70 kernels in the CUDA 13.0 build
    assert setup_plan.runs_on(archs, (7, 5)) and setup_plan.runs_on(archs, (9, 0))
    assert setup_plan.runs_on(archs, (8, 9))  # L4 / RTX 4090 run the sm_86 kernels
    assert setup_plan.runs_on(archs, (12, 1)) and not setup_plan.runs_on(archs, (11, 0))
    assert setup_plan.runs_on(['sm_80', 'compute_80'], (11, 0))  # PTX is compiled for newer GPUs


def test_torch_plan_picks_the_device():
    assert setup_plan.torch_plan({}, [], None) == dict(device='cpu', torch_index='')  # today's CPU path
    assert setup_plan.torch_plan({}, [H100], (13, 0)) == dict(device='cuda', torch_index='')
    assert setup_plan.torch_plan({'FDCLIP_DEVICE': 'cpu'}, [H100], (13, 0))['device'] == 'cpu'
    assert setup_plan.torch_plan({'FDCLIP_DEVICE': 'cuda'}, [], None)['device'] == 'cuda'  # a login node
    with pytest.raises(PlanError, match='auto, cuda or cpu'):
        setup_plan.torch_plan({'FDCLIP_DEVICE': 'gpu'}, [], None)


def test_torch_plan_refuses_the_default_wheel_where_it_cannot_run():
    with pytest.raises(PlanError, match=r'CUDA 12\.4 at most.*FDCLIP_TORCH_INDEX'):
        setup_plan.torch_plan({}, [H100], (12, 4))
    with pytest.raises(PlanError, match=r'none for Tesla V100-SXM2-32GB \(7\.0\).*FDCLIP_TORCH_INDEX'):
        setup_plan.torch_plan({}, [V100], (13, 0))
    index = 'https://download.pytorch.org/whl/cu126'
    plan = setup_plan.torch_plan({'FDCLIP_TORCH_INDEX': index}, [V100], (12, 8))
    assert plan == dict(device='cuda', torch_index=index)  # the user's choice; checked once torch is in


def test_mmcv_plan_on_cpu_is_the_build_of_earlier_versions():
    plan = setup_plan.mmcv_plan({}, 'cpu', [], TORCH_CU130, None, python='cp311')
    assert plan['kind'] == 'cpu-ops' and plan['cache_key'] == 'cp311-torch2.14.1'  # the existing cache's key
    assert plan['build_env'] == {'MMCV_WITH_OPS': '1', 'FORCE_CUDA': '0', 'CUDA_VISIBLE_DEVICES': ''}
    assert plan['prebuilt_index'] == ''


def test_mmcv_plan_on_cuda_builds_the_visible_architectures():
    plan = setup_plan.mmcv_plan({}, 'cuda', [H100, A100, H100], TORCH_CU130, (13, 0), '/opt/cuda', 'cp311')
    assert plan['kind'] == 'cuda-ops' and plan['cache_key'] == 'cp311-torch2.14.1-cu130-sm80_90'
    assert plan['build_env'] == {
        'MMCV_WITH_OPS': '1',
        'FORCE_CUDA': '1',
        'TORCH_CUDA_ARCH_LIST': '8.0;9.0',
        'CUDA_HOME': '/opt/cuda'
    }
    own = setup_plan.mmcv_plan({'TORCH_CUDA_ARCH_LIST': '9.0+PTX'}, 'cuda', [], TORCH_CU130, (13, 0))
    assert own['build_env']['TORCH_CUDA_ARCH_LIST'] == '9.0+PTX' and own['cache_key'].endswith('-cu130-sm90ptx')
    lite = setup_plan.mmcv_plan({'FDCLIP_MMCV_OPS': '0'}, 'cuda', [H100], TORCH_CU130, None, python='cp311')
    assert lite == dict(
        kind='lite', build_env={'MMCV_WITH_OPS': '0'}, cache_key='cp311-torch2.14.1-lite', prebuilt_index='')
    cpu = setup_plan.mmcv_plan({}, 'cpu', [], TORCH_CU130, None, python='cp311')
    assert len({plan['cache_key'], own['cache_key'], lite['cache_key'], cpu['cache_key']}) == 4


def test_mmcv_plan_adds_torch_wheels_cuda_headers_to_a_toolkit_without_them(tmp_path):
    headers = ['/venv/site-packages/nvidia/cu13/include']
    (tmp_path / 'include').mkdir()
    plan = setup_plan.mmcv_plan({}, 'cuda', [H100], dict(TORCH_CU130, header_dirs=headers), (13, 0), str(tmp_path))
    assert plan['build_env']['CPATH'] == headers[0]
    (tmp_path / 'include' / 'cusparse.h').write_text('')
    plan = setup_plan.mmcv_plan({}, 'cuda', [H100], dict(TORCH_CU130, header_dirs=headers), (13, 0), str(tmp_path))
    assert 'CPATH' not in plan['build_env']


def test_mmcv_plan_refusals_say_what_to_set():
    with pytest.raises(PlanError, match='CPU build: set FDCLIP_TORCH_INDEX'):
        setup_plan.mmcv_plan({}, 'cuda', [H100], dict(version='2.14.1+cpu', cuda=None, archs=[]), (13, 0))
    with pytest.raises(PlanError, match='set TORCH_CUDA_ARCH_LIST'):
        setup_plan.mmcv_plan({}, 'cuda', [], TORCH_CU130, (13, 0))
    with pytest.raises(PlanError, match='need nvcc.*FDCLIP_MMCV_OPS=0'):
        setup_plan.mmcv_plan({}, 'cuda', [H100], TORCH_CU130, None)
    with pytest.raises(PlanError, match=r'nvcc 12\.4 .* does not match'):
        setup_plan.mmcv_plan({}, 'cuda', [H100], TORCH_CU130, (12, 4), '/usr/local/cuda-12.4')
    with pytest.raises(PlanError, match='no kernels for Tesla V100'):
        setup_plan.mmcv_plan({}, 'cuda', [V100], TORCH_CU130, (13, 0))
    with pytest.raises(PlanError, match='FDCLIP_MMCV_OPS must be 0 or 1'):
        setup_plan.mmcv_plan({'FDCLIP_MMCV_OPS': 'no'}, 'cpu', [], TORCH_CU130, None)


def test_prebuilt_mmcv_only_for_torch_up_to_2_1():
    assert setup_plan.prebuilt_mmcv_index('2.14.1+cu130', '13.0') is None
    assert setup_plan.prebuilt_mmcv_index('2.2.0', '12.1') is None
    assert setup_plan.prebuilt_mmcv_index('2.1.2+cu121', '12.1') == \
        'https://download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html'
    assert setup_plan.prebuilt_mmcv_index('1.13.1', None) == \
        'https://download.openmmlab.com/mmcv/dist/cpu/torch1.13/index.html'


# ---- the script and the helper as setup_env.sh runs them, with a faked GPU side ----


def write_tool(folder, name: str, body: str) -> None:
    path = osp.join(folder, name)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\n' + textwrap.dedent(body))
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


def fake_nvidia_smi(folder, gpus, driver_cuda: str = '13.0') -> None:
    """An ``nvidia-smi`` that answers the two queries of the plan as a real one does."""
    rows = ''.join(f'{g.name}, {g.capability[0]}.{g.capability[1]}\\n' for g in gpus)
    write_tool(
        folder, 'nvidia-smi', f'''\
        case "$1" in
          --query-gpu=*) printf '{rows}' ;;
          -L) printf 'GPU 0: {gpus[0].name}\\n' ;;
          *) printf '| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: {driver_cuda}     |\\n' ;;
        esac
        ''')


@pytest.fixture
def machine(tmp_path):
    """PATH without a real nvidia-smi / nvcc, a fake CUDA toolkit (nvcc 13.0), and a runner of commands."""
    bin_dir, cuda_home = tmp_path / 'bin', tmp_path / 'cuda'
    bin_dir.mkdir()
    (cuda_home / 'bin').mkdir(parents=True)
    write_tool(
        cuda_home / 'bin', 'nvcc', '''\
        echo "nvcc: NVIDIA (R) Cuda compiler driver"
        echo "Cuda compilation tools, release 13.0, V13.0.88"
        ''')
    system_path = [
        p for p in os.environ['PATH'].split(os.pathsep)
        if not (shutil.which('nvidia-smi', path=p) or shutil.which('nvcc', path=p))
    ]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(('FDCLIP_', 'CUDA_', 'TORCH_CUDA_ARCH_LIST'))}
    base_env.update(
        PATH=os.pathsep.join([str(bin_dir), *system_path]),
        CUDA_HOME=str(cuda_home),
        FDCLIP_VENV=sys.prefix,
        PYTHON=sys.executable)

    def run(*command, **env) -> subprocess.CompletedProcess:
        return subprocess.run([str(c) for c in command],
                              env={
                                  **base_env,
                                  **env
                              },
                              capture_output=True,
                              text=True,
                              timeout=120)

    run.bin_dir, run.cuda_home = bin_dir, cuda_home
    return run


def print_plan(machine, **env) -> dict:
    proc = machine('bash', SCRIPT, '--print-plan', **env)
    lines = dict(line.split(': ', 1) for line in proc.stdout.splitlines() if ': ' in line)
    return dict(lines, rc=proc.returncode, stderr=proc.stderr)


@pytest.mark.slow
def test_print_plan_on_a_cpu_machine(machine):
    stamp = osp.join(sys.prefix, '.fdclip_stamp')
    before = open(stamp).read() if osp.exists(stamp) else None
    plan = print_plan(machine)
    assert plan['rc'] == 0, plan['stderr']
    assert plan['device'] == 'cpu (GPUs: none)' and plan['torch index'].startswith('pip default')
    assert plan['mmcv'] == 'cpu-ops; build: MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES='
    assert plan['mmcv cache key'] == f'{PY}-torch{torch.__version__.split("+")[0]}'
    assert (open(stamp).read() if osp.exists(stamp) else None) == before  # nothing installed or stamped
    assert machine('bash', SCRIPT, '--install-everything').returncode == 2


@pytest.mark.slow
@pytest.mark.skipif(torch.version.cuda is None, reason='the CUDA plan reads the installed torch: a CUDA build')
def test_print_plan_on_a_fake_h100(machine):
    fake_nvidia_smi(machine.bin_dir, [H100])
    plan = print_plan(machine)
    assert plan['rc'] == 0, plan['stderr']
    assert plan['device'] == 'cuda (GPUs: NVIDIA H100 80GB HBM3 (9.0))'
    cuda = torch.version.cuda.replace('.', '')
    # (+ CPATH: the fake toolkit, like a pip-assembled one, has no cuSPARSE headers)
    assert plan['mmcv'].startswith(f'cuda-ops; build: MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 '
                                   f'CUDA_HOME={machine.cuda_home}')
    assert plan['mmcv cache key'] == f'{PY}-torch{torch.__version__.split("+")[0]}-cu{cuda}-sm90'
    lite = print_plan(machine, FDCLIP_MMCV_OPS='0')
    assert lite['mmcv'] == 'lite; build: MMCV_WITH_OPS=0' and lite['mmcv cache key'].endswith('-lite')


@pytest.mark.slow
def test_print_plan_refuses_a_v100_with_the_default_torch(machine):
    fake_nvidia_smi(machine.bin_dir, [V100], driver_cuda='12.4')
    plan = print_plan(machine)
    assert plan['rc'] == 2 and 'driver supports CUDA 12.4 at most' in plan['stderr']
    assert 'FDCLIP_TORCH_INDEX' in plan['stderr']
    assert print_plan(machine, FDCLIP_DEVICE='cpu')['rc'] == 0


@pytest.mark.slow
@pytest.mark.skipif(torch.version.cuda is None, reason='the CUDA plan reads the installed torch: a CUDA build')
def test_shell_assignments_evaluate_in_bash(machine):
    """setup_env.sh evaluates the helper's output: the variables and the build's exports arrive intact."""
    fake_nvidia_smi(machine.bin_dir, [A100, H100])
    script = f'''
        set -eu
        plan=$("$PYTHON" {PLANNER} torch); eval "$plan"
        plan=$("$PYTHON" {PLANNER} mmcv); eval "$plan"
        eval "$FDCLIP_PLAN_MMCV_EXPORTS"
        printf '%s|%s|%s|%s|%s|%s\\n' "$FDCLIP_PLAN_DEVICE" "$FDCLIP_PLAN_TORCH_INDEX" "$FDCLIP_PLAN_MMCV_KEY" \
            "$MMCV_WITH_OPS" "$FORCE_CUDA" "$TORCH_CUDA_ARCH_LIST"
    '''
    proc = machine('bash', '-c', script)
    assert proc.returncode == 0, proc.stderr
    device, index, key, ops, force, archs = proc.stdout.strip().split('|')
    assert (device, index, ops, force, archs) == ('cuda', '', '1', '1', '8.0;9.0') and key.endswith('-sm80_90')
    proc = machine(
        'bash', '-c', script.replace('"$TORCH_CUDA_ARCH_LIST"', '"${CUDA_VISIBLE_DEVICES-unset}"'), FDCLIP_DEVICE='cpu')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split('|')[3:] == ['1', '0', '']  # CPU ops, the GPU hidden from mmcv's setup.py


@pytest.mark.slow
def test_distillation_runs_with_mmcv_built_without_ops(tmp_path, tiny_clip_teacher):
    """What FDCLIP_MMCV_OPS=0 offers: mmcv without its compiled ops (``mmcv._ext``) is enough to import the
    package and take a distillation training step (the mmseg-based depth modules are then left out)."""
    import mmcv
    lite = tmp_path / 'lite'
    shutil.copytree(osp.dirname(mmcv.__file__), lite / 'mmcv', ignore=shutil.ignore_patterns('_ext*'))
    code = textwrap.dedent('''\
        import json, sys
        import torch
        import mmcv
        assert mmcv.__file__.startswith(sys.argv[2]), mmcv.__file__
        from mmengine.optim import build_optim_wrapper
        from fdclip_mm.models.algorithms import FeatureDistiller
        from fdclip_mm.registry import MODELS
        model = FeatureDistiller(
            student=dict(type='FDViT', arch=dict(embed_dims=48, num_layers=2, num_heads=2, feedforward_channels=96),
                         img_size=32, patch_size=8),
            teacher=json.loads(sys.argv[1]))
        optim = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))
        data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(2)])
        log = model.train_step(data, optim)
        assert torch.isfinite(log['loss']), log
        assert 'mmcv._ext' not in sys.modules and MODELS.get('GLPDepthHead') is None
        print('ok')
        ''')
    env = {
        **os.environ, 'PYTHONPATH': os.pathsep.join([str(lite), os.environ.get('PYTHONPATH', '')]),
        'OMP_NUM_THREADS': '1'
    }
    proc = subprocess.run([sys.executable, '-c', code,
                           json.dumps(tiny_clip_teacher),
                           str(lite)],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]


@pytest.fixture
def fake_venv(tmp_path):
    """A venv whose ``python -m pip`` only logs its arguments; other calls go to this suite's interpreter."""
    venv, log = tmp_path / 'venv', tmp_path / 'pip.log'
    (venv / 'bin').mkdir(parents=True)
    write_tool(
        venv / 'bin', 'python', f'''\
        if [ "$1" = -m ] && [ "$2" = pip ]; then shift 2; echo "pip $*" >>{log}; exit 0; fi
        case "$*" in *mmcv._ext*) exit 1 ;; esac  # no mmcv installed yet
        exec {sys.executable} "$@"
        ''')
    return venv, log


def run_setup(machine, venv, cache, **env) -> subprocess.CompletedProcess:
    return machine('bash', SCRIPT, FDCLIP_VENV=str(venv), FDCLIP_WHEEL_CACHE=str(cache), **env)


@pytest.mark.slow
def test_cpu_install_path_with_pip_faked(machine, fake_venv, tmp_path):
    """The commands of a CPU install: torch from pip's default index, mmcv from the CPU key of the cache."""
    venv, log = fake_venv
    key = f'{PY}-torch{torch.__version__.split("+")[0]}'
    wheel = tmp_path / 'cache' / key / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b'')
    proc = run_setup(machine, venv, tmp_path / 'cache')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pins = osp.join(REPO, 'requirements', 'pinned.txt')
    commands = open(log).read().splitlines()
    assert f'pip install -q -c {pins} torch torchvision' in commands  # no index: as before
    assert f'pip install -q -c {pins} {wheel}' in commands
    assert commands[-1] == 'pip check' and 'device: cpu' in proc.stdout
    assert open(venv / '.fdclip_mmcv').read().strip() == key
    assert 'up to date' in run_setup(machine, venv, tmp_path / 'cache').stdout


@pytest.mark.slow
@pytest.mark.skipif(torch.version.cuda is None, reason='the CUDA plan reads the installed torch: a CUDA build')
def test_cuda_install_path_with_pip_faked(machine, fake_venv, tmp_path):
    """On a (fake) H100: mmcv from the CUDA key, and a final refusal when the installed torch cannot see the GPU
    (here it cannot: the GPU is not real), before the venv is stamped."""
    venv, log = fake_venv
    fake_nvidia_smi(machine.bin_dir, [H100])
    key = f'{PY}-torch{torch.__version__.split("+")[0]}-cu{torch.version.cuda.replace(".", "")}-sm90'
    wheel = tmp_path / 'cache' / key / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b'')
    proc = run_setup(machine, venv, tmp_path / 'cache')
    assert 'device: cuda' in proc.stdout and f'installing mmcv from {wheel.parent}' in proc.stdout
    assert proc.returncode == 1 and 'installed torch does not see it' in proc.stderr
    assert not (venv / '.fdclip_stamp').exists()
    index = 'https://download.pytorch.org/whl/cu130'
    run_setup(machine, venv, tmp_path / 'cache', FDCLIP_TORCH_INDEX=index)
    assert any(c.endswith(f'--index-url {index} torch torchvision') for c in open(log).read().splitlines())
