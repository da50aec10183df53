"""Using fdclip_mm from an existing mmseg project: mmseg's own tools/train.py trains our backbone, neck and
layer-decay optimizer from a config that only imports the package (``custom_imports``) in mmseg's scope."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import mmseg
import pytest
import torch

from ..helpers.dense_data import write_ade_folder

pytestmark = pytest.mark.slow

MMSEG_TRAIN = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')

PROJECT_CONFIG = """
_base_ = [
    'mmseg::_base_/models/upernet_beit.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)
default_scope = 'mmseg'
crop_size = (32, 32)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='fdclip_mm.FDViT',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=crop_size,
        patch_size=8,
        pos_embed='rpb',
        out_type='featmap',
        out_indices=(0, 1),
        final_norm=False),
    neck=dict(_delete_=True, type='fdclip_mm.ViTPyramidNeck', embed_dims=32, rescales=(2, 1)),
    decode_head=dict(in_channels=[32, 32], in_index=[0, 1], channels=16, pool_scales=(1, 2)),
    auxiliary_head=dict(in_channels=32, in_index=1, channels=8),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(21, 21)),
)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='ade', pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.5))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
"""


def test_mmseg_train_tool_runs_fdclip_mm_modules(tmp_path):
    write_ade_folder(str(tmp_path / 'ade'), count=2, size=(40, 48))
    (tmp_path / 'project_config.py').write_text(textwrap.dedent(PROJECT_CONFIG))
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, MMSEG_TRAIN, 'project_config.py', '--work-dir', 'work'],
                          cwd=tmp_path,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ckpt_path = tmp_path / 'work' / 'iter_2.pth'
    assert ckpt_path.is_file()
    assert (tmp_path / 'work' / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    import fdclip_mm.engine  # noqa: F401  (allow-lists the Runner checkpoint's message-hub types)
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2
    state = ckpt['state_dict']
    rpb = state['backbone.layers.1.attn.rel_pos_bias.relative_position_bias_table']
    assert rpb.shape == ((2 * 4 - 1)**2 + 3, 2)  # 4 x 4 patches, 2 heads
    assert state['neck.branches.0.weight'].shape == (32, 32, 2, 2)  # the x2 transposed convolution
    # Our constructor built the groups: one lr scale per depth (embeddings, 2 blocks, the rest), rate 0.5.
    scales = sorted({g['lr_scale'] for g in ckpt['optimizer']['param_groups']})
    assert scales == [0.125, 0.25, 0.5, 1.0]
    assert 'Layer-wise lr decay 0.5' in proc.stdout + proc.stderr
