"""The real distiller through the tools: 2 CPU processes (gloo), resume, kill -9 and resume, on a tiny FD config."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config

from fdclip_mm.engine import is_cpu_only
from ..helpers.tiny_fd_configs import FD_CONFIG, deterministic_fd_config, shrink
from ..helpers.tools import TOOLS, call, free_port, load_weights, run, tool_env

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not is_cpu_only(), reason='CPU-only behaviour')
def test_fd_config_trains_on_two_cpu_processes(tmp_path):
    cfg = shrink(Config.fromfile(FD_CONFIG), tmp_path)
    cfg.custom_imports = dict(imports=['fdclip_mm', 'toy_modules'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='mmengine.FdclipDumpWeightsHook')]
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=2)
    cfg.train_dataloader.batch_size = 1  # 4 images, 2 ranks: 2 steps per epoch
    config = str(tmp_path / 'fd_tiny.py')
    cfg.dump(config)
    run([osp.join(TOOLS, 'dist_train.sh'), config, 2, '--work-dir', 'dist'],
        tmp_path,
        PORT=str(free_port()),
        PYTHON=sys.executable)
    rank0 = load_weights(tmp_path / 'dist' / 'weights_rank0.pth')
    rank1 = load_weights(tmp_path / 'dist' / 'weights_rank1.pth')
    assert rank0.keys() == rank1.keys() and not any(k.startswith('teacher.') for k in rank0)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    ckpt = torch.load(tmp_path / 'dist' / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 4
    for key, value in ckpt['state_dict'].items():
        assert torch.equal(value, rank0[key]), key


def test_fd_config_resumes_from_its_checkpoint(tmp_path):
    cfg = shrink(Config.fromfile(FD_CONFIG), tmp_path)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.dump(str(tmp_path / 'one_epoch.py'))
    cfg.train_cfg.max_epochs = 2
    cfg.dump(str(tmp_path / 'two_epochs.py'))

    train = [sys.executable, osp.join(TOOLS, 'train.py')]
    run(train + ['one_epoch.py', '--work-dir', 'work'], tmp_path)
    first = torch.load(tmp_path / 'work' / 'epoch_1.pth', map_location='cpu', weights_only=True)
    proc = run(train + ['two_epochs.py', '--work-dir', 'work', '--resume'], tmp_path)
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    second = torch.load(tmp_path / 'work' / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert second['meta']['epoch'] == 2 and second['meta']['iter'] == 4
    assert not any(k.startswith('teacher.') for k in second['state_dict'])
    # AdamW continued from the saved state: 2 + 2 steps on the student's parameters
    steps = {float(s['step']) for s in second['optimizer']['state'].values()}
    assert steps == {4.0}
    assert {float(s['step']) for s in first['optimizer']['state'].values()} == {2.0}
    # resuming past the run's end is refused, saying what to change (mmengine ended at once with exit code 0)
    again = call(train + ['one_epoch.py', '--work-dir', 'work', '--resume'], tmp_path)
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == (
        f'[error] {tmp_path}/work/epoch_2.pth: the run already finished at epoch 2 beyond train_cfg.max_epochs=1; '
        'raise max_epochs to continue it'), again.stderr[-3000:]


def val_curve(work_dir) -> list:
    """The validation feature error of each epoch, from the run's scalars log."""
    import glob
    import json
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        records = [json.loads(line) for line in f]
    return [r['distill/feature_error'] for r in records if 'distill/feature_error' in r]


@pytest.mark.skipif(not is_cpu_only(), reason='CPU-only behaviour')
def test_two_processes_follow_one_process_with_the_doubled_batch(tmp_path):
    """DDP averages the ranks' gradients: 2 x batch 1 must train like 1 x batch 2 on the same samples."""
    cfg = deterministic_fd_config(tmp_path, epochs=2)
    cfg.custom_imports = dict(imports=['fdclip_mm', 'toy_modules'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='mmengine.FdclipDumpWeightsHook')]
    cfg.train_dataloader.batch_size = 1
    cfg.dump(str(tmp_path / 'two_ranks.py'))
    cfg.train_dataloader.batch_size = 2
    cfg.dump(str(tmp_path / 'one_rank.py'))

    run([osp.join(TOOLS, 'dist_train.sh'), 'two_ranks.py', 2, '--work-dir', 'dist'],
        tmp_path,
        PORT=str(free_port()),
        PYTHON=sys.executable)
    run([sys.executable, osp.join(TOOLS, 'train.py'), 'one_rank.py', '--work-dir', 'single'], tmp_path)

    two, one = val_curve(tmp_path / 'dist'), val_curve(tmp_path / 'single')
    assert len(two) == len(one) == 2 and one[1] != one[0]
    np.testing.assert_allclose(two, one, rtol=1e-4)
    dist_weights = load_weights(tmp_path / 'dist' / 'weights_rank0.pth')
    single_weights = load_weights(tmp_path / 'single' / 'weights_rank0.pth')
    initial = torch.load(tmp_path / 'dist' / 'epoch_1.pth', map_location='cpu', weights_only=True)['state_dict']
    moved = 0
    for key, value in single_weights.items():
        torch.testing.assert_close(dist_weights[key], value, rtol=1e-4, atol=1e-5, msg=key)
        moved += not torch.equal(value, initial[key])
    assert moved > 0


def test_kill_9_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    cfg = deterministic_fd_config(tmp_path, epochs=3)
    # random crops, flips and stochastic depth again: their generators must be restored on resume
    cfg.model.student.drop_path_rate = 0.2
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='fdclip_mm.CheckedLoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.08, 1.0), backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs')
    ]
    cfg.dump(str(tmp_path / 'fd.py'))
    train = [sys.executable, osp.join(TOOLS, 'train.py'), 'fd.py']

    run(train + ['--work-dir', 'straight'], tmp_path)
    log = open(tmp_path / 'killed.log', 'w')
    proc = subprocess.Popen([str(c) for c in train + ['--work-dir', 'killed']],
                            cwd=tmp_path,
                            env=tool_env(),
                            stdout=log,
                            stderr=subprocess.STDOUT)
    first = tmp_path / 'killed' / 'epoch_1.pth'
    deadline = time.time() + 150
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists() and proc.returncode == -signal.SIGKILL, open(tmp_path / 'killed.log').read()[-3000:]
    assert not (tmp_path / 'killed' / 'epoch_3.pth').exists()

    resumed = run(train + ['--work-dir', 'killed', '--resume'], tmp_path)
    assert 'Restored the random generator states' in resumed.stdout + resumed.stderr
    straight = torch.load(tmp_path / 'straight' / 'epoch_3.pth', map_location='cpu', weights_only=True)
    again = torch.load(tmp_path / 'killed' / 'epoch_3.pth', map_location='cpu', weights_only=True)
    assert straight['state_dict'].keys() == again['state_dict'].keys()
    for key, value in straight['state_dict'].items():
        assert torch.equal(value, again['state_dict'][key]), key
