"""Feature maps of every backbone kind, and the grid resampling of the teacher's map, by value."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models import ConvNeXt, ResNet, SwinTransformer, VisionTransformer

from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.feature_map import (FeatureMap, backbone_features, feature_tokens, output_layout,
                                          resample_patches, tokens_to_feature_map)


def test_equal_grids_are_left_alone():
    patches = torch.randn(2, 3, 4, 5)
    assert resample_patches(patches, (4, 5)) is patches


def test_shrinking_by_an_integer_factor_gives_block_means():
    patches = torch.arange(16.).reshape(1, 1, 4, 4)
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]]).reshape(1, 1, 2, 2)
    torch.testing.assert_close(resample_patches(patches, (2, 2)), expected)


def test_shrinking_by_a_fraction_averages_the_covering_tokens():
    """16 -> 14 (patch 14 teacher under a patch 16 student at 224): adaptive average windows of 2 tokens."""
    patches = torch.randn(1, 2, 16, 16)
    out = resample_patches(patches, (14, 14))
    assert out.shape == (1, 2, 14, 14)
    # cell (0, 0) covers rows/cols [0, 16/14) -> tokens 0..1 on each axis
    torch.testing.assert_close(out[0, :, 0, 0], patches[0, :, :2, :2].mean((-1, -2)))
    torch.testing.assert_close(resample_patches(torch.full((1, 1, 16, 16), 3.), (7, 7)), torch.full((1, 1, 7, 7), 3.))


def test_enlarging_interpolates_bilinearly():
    patches = torch.tensor([[0., 1.], [2., 3.]]).reshape(1, 1, 2, 2)
    out = resample_patches(patches, (4, 4))
    # align_corners=False: output centres at 0.25, 0.75 of an input cell; edges clamp
    expected_row0 = torch.tensor([0., 0.25, 0.75, 1.])
    torch.testing.assert_close(out[0, 0, 0], expected_row0)
    torch.testing.assert_close(out, F.interpolate(patches, size=(4, 4), mode='bilinear', align_corners=False))


def test_mixed_axes_shrink_then_enlarge():
    patches = torch.randn(1, 1, 4, 2)
    out = resample_patches(patches, (2, 4))
    expected = F.interpolate(F.adaptive_avg_pool2d(patches, (2, 2)), size=(2, 4), mode='bilinear', align_corners=False)
    torch.testing.assert_close(out, expected)


def test_tokens_round_trip_in_raster_order():
    tokens = torch.randn(2, 1 + 6, 5)
    features = tokens_to_feature_map(tokens, (2, 3), 1)
    assert features.patches.shape == (2, 5, 2, 3) and features.grid == (2, 3)
    torch.testing.assert_close(features.patches[:, :, 1, 0], tokens[:, 1 + 3])
    torch.testing.assert_close(feature_tokens(features, with_cls=True), tokens)
    torch.testing.assert_close(feature_tokens(features, with_cls=False), tokens[:, 1:])
    with pytest.raises(ValueError, match='no class token'):
        feature_tokens(FeatureMap(features.patches), with_cls=True)
    with pytest.raises(ValueError, match='do not make 1 extra tokens and a 3x3'):
        tokens_to_feature_map(tokens, (3, 3), 1)


@pytest.mark.parametrize('backbone, channels, grid, has_cls', [
    (dict(
        cls=FDViT,
        arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32),
        img_size=32,
        patch_size=8,
        out_type='raw'), 16, (4, 4), True),
    (dict(
        cls=VisionTransformer,
        arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32),
        img_size=32,
        patch_size=8,
        out_type='raw'), 16, (4, 4), True),
    (dict(
        cls=VisionTransformer,
        arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32),
        img_size=32,
        patch_size=8,
        out_type='featmap'), 16, (4, 4), False),
    (dict(
        cls=SwinTransformer,
        arch=dict(embed_dims=8, depths=[1, 1], num_heads=[1, 2]),
        img_size=32,
        window_size=4,
        out_indices=(1, )), 16, (4, 4), False),
    (dict(cls=ConvNeXt, arch=dict(depths=[1, 1], channels=[8, 16]), out_indices=(1, ), gap_before_final_norm=False), 16,
     (4, 4), False),
    (dict(cls=ResNet, depth=18, out_indices=(1, )), 128, (4, 4), False),
])
def test_backbone_features_of_each_kind(backbone, channels, grid, has_cls):
    backbone = dict(backbone)
    model = backbone.pop('cls')(**backbone)
    model.eval()  # some mmpretrain backbones' train() returns None
    images = torch.randn(2, 3, 32, 32)
    features = backbone_features(model, model(images), images.shape[-2:])
    layout = output_layout(model)
    assert layout.channels == channels
    if isinstance(model, (FDViT, VisionTransformer)):  # tokens on a patch grid, the class token first
        assert layout.patch_stride == (8, 8) and layout.grid((32, 32)) == grid and layout.num_extra_tokens == 1
    else:  # stage maps carry their own grid
        assert layout.patch_stride is None and layout.num_extra_tokens == 0
        with pytest.raises(ValueError, match='has no token grid'):
            layout.grid((32, 32))
    assert features.patches.shape == (2, channels, *grid)
    assert (features.cls_token is not None) == has_cls


def test_several_outputs_or_pooled_outputs_are_refused():
    vit = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
        img_size=32,
        patch_size=8,
        out_indices=(0, 1),
        out_type='raw')
    with pytest.raises(ValueError, match='returned 2 outputs.*single index'):
        backbone_features(vit, vit(torch.randn(1, 3, 32, 32)), (32, 32))
    pooled = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32), img_size=32,
        patch_size=8)  # out_type='cls_token'
    with pytest.raises(ValueError, match="out_type='raw'"):
        backbone_features(pooled, pooled(torch.randn(1, 3, 32, 32)), (32, 32))
