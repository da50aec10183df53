"""A distilled Swin student loads into mmdet's and mmseg's own SwinTransformer and fine-tunes with layer decay."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import build_optim_wrapper
from torch import nn

from fdclip_mm.converters import convert_fd_checkpoint
from fdclip_mm.models.algorithms import FeatureDistiller
from ..helpers.checkpoints import tiny_teacher_cfg

SWIN = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2])


@pytest.fixture
def swin_student_checkpoint(tmp_path):
    teacher = tiny_teacher_cfg('clip', str(tmp_path / 'clip.pth'), patch=16, image=64)
    model = FeatureDistiller(
        student=dict(type='mmpretrain.SwinTransformer', arch=SWIN, img_size=64, window_size=2, out_indices=(3, )),
        teacher=teacher)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path, model


@pytest.mark.parametrize('library', ['mmdet', 'mmseg'])
def test_student_loads_into_the_dense_libraries_swin_without_missing_keys(library, swin_student_checkpoint, tmp_path):
    path, model = swin_student_checkpoint
    if library == 'mmdet':
        from mmdet.models.backbones import SwinTransformer
    else:
        from mmseg.models.backbones import SwinTransformer
    dst = str(tmp_path / 'swin.pth')
    state = convert_fd_checkpoint(path, dst, out_indices=(0, 1, 2, 3))
    assert all(key.startswith('backbone.') for key in state)  # the only keys mmdet's Swin reads
    backbone = SwinTransformer(
        embed_dims=16,
        depths=SWIN['depths'],
        num_heads=SWIN['num_heads'],
        window_size=2,
        out_indices=(0, 1, 2, 3),
        init_cfg=ConfigDict(type='Pretrained', checkpoint=dst))
    backbone.init_weights()  # the library's own loading path, as its configs use it
    assert set(backbone.state_dict()) == {key[len('backbone.'):] for key in state}  # no missing / unexpected key
    for key, value in model.student.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[key], value)
    assert torch.equal(backbone.norm0.weight, torch.ones(16))
    images = torch.randn(1, 3, 64, 64)
    backbone.eval()
    model.student.eval()
    torch.testing.assert_close(backbone(images)[3], model.student(images)[0])  # same last stage, same norm


def test_dense_swin_fine_tunes_with_the_layer_decay_constructor(swin_student_checkpoint, tmp_path):
    from mmdet.models.backbones import SwinTransformer
    path, _ = swin_student_checkpoint
    model = nn.Module()
    dst = str(tmp_path / 'swin.pth')
    convert_fd_checkpoint(path, dst, out_indices=(0, 1, 2, 3))
    model.backbone = SwinTransformer(
        embed_dims=16,
        depths=SWIN['depths'],
        num_heads=SWIN['num_heads'],
        window_size=2,
        out_indices=(0, 1, 2, 3),
        init_cfg=ConfigDict(type='Pretrained', checkpoint=dst))
    model.backbone.init_weights()
    model.head = nn.Linear(128, 2)
    optim = build_optim_wrapper(
        model,
        dict(
            constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            paramwise_cfg=dict(layer_decay_rate=0.5)))
    by_name = {n: g for g in optim.optimizer.param_groups for n in g['param_names']}
    num_depths = sum(SWIN['depths']) + 2
    assert by_name['backbone.patch_embed.projection.weight']['lr'] == pytest.approx(1e-3 * 0.5**(num_depths - 1))
    assert by_name['backbone.stages.2.blocks.1.attn.w_msa.qkv.weight']['layer_depth'] == 1 + 1 + 1 + 1
    assert by_name['backbone.stages.0.downsample.reduction.weight']['layer_depth'] == 1
    assert by_name['head.weight']['lr'] == pytest.approx(1e-3)
    loss = model.head(model.backbone(torch.randn(2, 3, 64, 64))[3].mean((-1, -2))).square().mean()
    loss.backward()
    before = model.backbone.patch_embed.projection.weight.detach().clone()
    optim.step()
    assert not torch.equal(before, model.backbone.patch_embed.projection.weight)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_convnext_student_loads_into_the_backbone_dense_configs_name(scope, tmp_path):
    """mmdet and mmseg have no ConvNeXt of their own: their configs name ``mmpretrain.ConvNeXt`` and read an
    mmpretrain checkpoint with ``prefix='backbone.'``, which is what the converter writes."""
    from mmengine.registry import MODELS, DefaultScope
    arch = dict(depths=[1, 1, 1, 1], channels=[8, 16, 32, 64])
    teacher = tiny_teacher_cfg('clip', str(tmp_path / 'clip.pth'), patch=16, image=64)
    model = FeatureDistiller(
        student=dict(type='mmpretrain.ConvNeXt', arch=arch, out_indices=(3, ), gap_before_final_norm=False),
        teacher=teacher)
    src = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), src)
    dst = str(tmp_path / 'convnext.pth')
    state = convert_fd_checkpoint(src, dst, out_indices=(0, 1, 2, 3))
    with DefaultScope.overwrite_default_scope(scope):  # not left behind for later tests
        backbone = MODELS.build(
            dict(
                type='mmpretrain.ConvNeXt',
                arch=arch,
                out_indices=(0, 1, 2, 3),
                gap_before_final_norm=False,
                init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.')))
    backbone.init_weights()
    own = backbone.state_dict()
    assert set(own) == {key[len('backbone.'):] for key in state}
    for key, value in model.student.state_dict().items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    assert torch.equal(own['norm0.weight'], torch.ones(8)) and torch.equal(own['norm2.bias'], torch.zeros(32))
    images = torch.randn(1, 3, 64, 64)
    backbone.eval()  # mmpretrain's ConvNeXt.train() returns None
    model.student.eval()
    torch.testing.assert_close(backbone(images)[3], model.student(images)[0])
