import pytest
import torch
import torch.nn.functional as F

from fdclip_mm.models import FDViT, ViTPyramidNeck


def tiny_featmap_backbone(**kwargs):
    arch = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
    return FDViT(
        arch=arch, img_size=64, patch_size=16, out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False, **kwargs)


def test_pyramid_strides_from_the_backbone():
    backbone, neck = tiny_featmap_backbone(), ViTPyramidNeck(32, norm_cfg=dict(type='BN'))
    feats = backbone(torch.randn(2, 3, 64, 96))
    assert [f.shape for f in feats] == [torch.Size([2, 32, 4, 6])] * 4
    pyramid = neck(feats)
    strides = [64 // p.shape[2] for p in pyramid]
    assert strides == [4, 8, 16, 32]
    assert [p.shape[3] for p in pyramid] == [24, 12, 6, 3]
    assert torch.equal(pyramid[2], feats[2])
    assert torch.equal(pyramid[3], F.max_pool2d(feats[3], 2))


def test_single_map_feeds_every_level_and_grads_flow():
    neck = ViTPyramidNeck(8, norm_cfg=dict(type='BN'))
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = neck([x])
    assert [o.shape[-1] for o in out] == [16, 8, 4, 2]
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in neck.parameters())


def test_bad_inputs_name_the_problem():
    neck = ViTPyramidNeck(8, norm_cfg=dict(type='BN'))
    with pytest.raises(ValueError, match='3 feature maps for 4 levels'):
        neck([torch.randn(1, 8, 4, 4)] * 3)
    with pytest.raises(ValueError, match='out_type "featmap"'):
        neck([torch.randn(1, 17, 8)] * 4)
    with pytest.raises(ValueError, match='rescales'):
        ViTPyramidNeck(8, rescales=(3, 1))
