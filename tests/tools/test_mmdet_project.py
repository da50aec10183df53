"""Using fdclip_mm from an existing mmdet project: mmdet's own tools/train.py trains a Mask R-CNN whose
backbone, neck and optimizer constructor come from fdclip_mm, with nothing of this repository on the path
but the installed package."""
import os
import os.path as osp
import subprocess
import sys

import mmdet
import pytest
import torch

from ..helpers.dense_data import write_coco
from ..helpers.user_projects import PROJECT_CONFIG

pytestmark = pytest.mark.slow

MMDET_TRAIN = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')


def test_mmdet_train_tool_trains_fdclip_model(tmp_path):
    write_coco(str(tmp_path / 'coco'))
    (tmp_path / 'mask_rcnn_fdvit.py').write_text(PROJECT_CONFIG)
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'PYTHONPATH')}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([sys.executable, MMDET_TRAIN, 'mask_rcnn_fdvit.py', '--work-dir', 'work_dir'],
                          cwd=tmp_path,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    log = proc.stdout + proc.stderr
    assert 'Layer-wise lr decay 0.75' in log  # our optimizer constructor built the optimizer
    checkpoint = torch.load(tmp_path / 'work_dir' / 'iter_2.pth', map_location='cpu', weights_only=True)
    state = checkpoint['state_dict']
    assert checkpoint['meta']['iter'] == 2
    assert state['backbone.layers.3.attn.rel_pos_bias.relative_position_bias_table'].shape == (7 * 7 + 3, 2)
    assert state['neck.0.branches.0.0.weight'].shape == (32, 32, 2, 2)  # ViTPyramidNeck's x4 level
    assert state['neck.1.lateral_convs.0.conv.weight'].shape == (32, 32, 1, 1)  # FPN after it
