"""The dense configs of the FD Swin-T student: mmdet's / mmseg's own SwinTransformer takes the converted student
through the config's init_cfg (every tensor, no key left to its initialiser), the layer-decay constructor groups
it by Swin depth, and the detector's FPN / the segmentor's heads get the four stages they are configured for.

The recipes are kept; the Swin is shrunk (widths 16-128, one or two blocks a stage, window 7 as configured).
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from mmpretrain.models import SwinTransformer

from fdclip_mm.converters import convert_fd_checkpoint
from fdclip_mm.engine.layer_decay_optim_constructor import lr_and_wd_by_name
from ..helpers.config_lists import REPO, assert_inferencers_find_the_loader

MASK_RCNN = 'configs/mask_rcnn_coco/mask-rcnn_fd-clip-swin-t_fpn_ms-crop-1x_coco.py'
UPERNET = 'configs/upernet_ade20k/upernet_fd-clip-swin-t_8xb2-160k_ade20k-512x512.py'
TINY = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2])
CHANNELS = [16, 32, 64, 128]


@pytest.fixture
def student_backbone(tmp_path):
    """A distillation checkpoint of a tiny mmpretrain Swin student (last stage only), converted for dense use."""
    torch.manual_seed(0)
    student = SwinTransformer(arch=TINY, img_size=224, window_size=7, out_indices=(3, ))
    with torch.no_grad():
        for param in student.parameters():  # norms start at 1 / 0: move them so that a skipped tensor shows
            param.add_(0.1 * torch.randn_like(param))
    checkpoint = str(tmp_path / 'epoch_300.pth')
    state = {f'student.{k}': v for k, v in student.state_dict().items()}
    state['projectors.0.weight'] = torch.randn(8, 128)
    torch.save(dict(state_dict=state, meta=dict(epoch=300)), checkpoint)
    backbone = str(tmp_path / 'fd-swin-t_backbone.pth')
    convert_fd_checkpoint(checkpoint, backbone, out_indices=(0, 1, 2, 3))
    return backbone, student.state_dict()


def shrunk(config: str, backbone: str) -> Config:
    cfg = Config.fromfile(f'{REPO}/{config}')
    assert_inferencers_find_the_loader(cfg)
    cfg.model.backbone.update(embed_dims=TINY['embed_dims'], depths=TINY['depths'], num_heads=TINY['num_heads'])
    cfg.model.backbone.init_cfg.checkpoint = backbone
    if 'neck' in cfg.model:  # Mask R-CNN: FPN over the four stages
        cfg.model.neck.in_channels = CHANNELS
    else:
        cfg.model.decode_head.update(in_channels=CHANNELS, channels=32)
        cfg.model.auxiliary_head.update(in_channels=CHANNELS[2], channels=16)
    return cfg


@pytest.mark.parametrize('config, scope', [(MASK_RCNN, 'mmdet'), (UPERNET, 'mmseg')])
def test_library_swin_loads_the_student_and_decays_by_depth(config, scope, student_backbone):
    backbone_file, student = student_backbone
    cfg = shrunk(config, backbone_file)
    init_default_scope(scope)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    assert type(model.backbone).__module__.startswith(f'{scope}.models.backbones')
    model.init_weights()
    loaded = model.backbone.state_dict()
    for key, value in student.items():  # every student tensor arrives, unchanged
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    for index in (0, 1, 2):  # output norms the one-stage student lacked: identity
        assert torch.equal(loaded[f'norm{index}.weight'], torch.ones(CHANNELS[index]))
    assert set(loaded) == set(student) | {f'norm{i}.{p}' for i in (0, 1, 2) for p in ('weight', 'bias')}

    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lr, rate = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    groups = lr_and_wd_by_name(optim.optimizer)
    num_layers = sum(TINY['depths']) + 2
    assert groups['backbone.patch_embed.projection.weight'][0] == pytest.approx(lr * rate**(num_layers - 1))
    assert groups['backbone.stages.2.blocks.1.ffn.layers.0.0.weight'][0] == pytest.approx(lr * rate**(num_layers - 5))
    table = 'backbone.stages.3.blocks.0.attn.w_msa.relative_position_bias_table'
    assert groups[table] == (pytest.approx(lr * rate**1), 0.)
    assert groups['backbone.stages.1.blocks.0.attn.w_msa.qkv.weight'][1] == 0.05

    model.eval()
    with torch.no_grad():
        features = model.extract_feat(torch.randn(1, 3, 64, 64))
    if scope == 'mmdet':  # FPN levels, strides 4 to 64
        assert [tuple(f.shape[1:]) for f in features] == [(256, 16 // 2**i, 16 // 2**i)
                                                          for i in range(4)] + [(256, 1, 1)]
    else:  # the four Swin stages, strides 4 to 32
        assert [tuple(f.shape[1:]) for f in features] == [(c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(CHANNELS)]
        assert model.decode_head(features).shape == (1, 150, 16, 16)
