"""The real distiller through tools/dist_train.sh: 2 CPU processes (gloo) on a tiny FD config."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from fdclip_mm.engine import is_cpu_only
from ..configs.test_configs import REPO, shrink
from .test_train_tool import TOOLS, free_port, load_weights, run

FD_CONFIG = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_vit-b16-dp0.2_16xb128-300e_in1k.py')


@pytest.mark.skipif(not is_cpu_only(), reason='CPU-only behaviour')
def test_fd_config_trains_on_two_cpu_processes(tmp_path):
    cfg = shrink(Config.fromfile(FD_CONFIG), tmp_path)
    cfg.custom_imports = dict(imports=['fdclip_mm', 'toy_modules'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='mmengine.FdclipDumpWeightsHook')]
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=2)
    cfg.train_dataloader.batch_size = 1  # 4 images, 2 ranks: 2 steps per epoch
    config = str(tmp_path / 'fd_tiny.py')
    cfg.dump(config)
    run([osp.join(TOOLS, 'dist_train.sh'), config, 2, '--work-dir', 'dist'], tmp_path, PORT=str(free_port()),
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
