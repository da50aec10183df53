"""DINOv2 (Hugging Face names) -> mmpretrain VisionTransformer: the fine-tuned-teacher reference."""

import pytest
import torch
from mmpretrain.models.backbones import VisionTransformer

from fdclip_mm.converters.dinov2_to_vit import dinov2_to_vit_state_dict
from fdclip_mm.models.feature_map import feature_tokens
from fdclip_mm.registry import MODELS
from ..helpers.checkpoints import dinov2_state_dict, tiny_teacher_cfg
from ..helpers.scripts import load_script

ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256)


def vit(img_size: int, **kwargs) -> VisionTransformer:
    model = VisionTransformer(arch=ARCH, img_size=img_size, patch_size=14, layer_scale_init_value=1e-5, **kwargs)
    model.eval()  # mmpretrain's train() returns None
    return model


@pytest.mark.parametrize('img_size', [28, 56])  # the native grid, and position embeddings resized to 4 x 4
def test_mmpretrain_vit_equals_the_teacher(tmp_path, img_size):
    """Positions resized at conversion (the classifier path) = resized by the backbone's load hook (the teacher)."""
    weights = dinov2_state_dict(hidden=64, layers=2, patch=14, image=28)
    teacher = MODELS.build(
        tiny_teacher_cfg('dinov2', str(tmp_path / 'dinov2.pth'), width=64, patch=14, image=28, img_size=img_size))
    grid = (img_size // 14, ) * 2
    model = vit(img_size, out_type='raw', final_norm=True)
    model.load_state_dict(dinov2_to_vit_state_dict(weights, grid, final_norm=True, head_norm=False), strict=True)
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], feature_tokens(teacher(x), with_cls=True), rtol=1e-5, atol=1e-5)


def test_classifier_converter_tool(tmp_path):
    torch.save(dinov2_state_dict(hidden=64, layers=2, patch=14, image=28), tmp_path / 'dinov2.pth')
    tool = load_script('tools/model_converters/dinov2_to_classifier.py')
    dst = str(tmp_path / 'cls.pth')
    assert tool.main([str(tmp_path / 'dinov2.pth'), dst, '--img-size', '56']) == 0
    state = torch.load(dst, weights_only=True)['state_dict']
    model = vit(56, out_type='avg_featmap', final_norm=False)
    model.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()}, strict=True)
    assert torch.equal(state['backbone.ln2.weight'], torch.ones(64)) and 'backbone.ln1.weight' not in state
    with pytest.raises(SystemExit, match='2'):  # kept without --overwrite
        tool.main([str(tmp_path / 'dinov2.pth'), dst, '--img-size', '56'])
    with pytest.raises(SystemExit, match='2'):  # never over its input
        tool.main([str(tmp_path / 'dinov2.pth'), str(tmp_path / 'dinov2.pth'), '--img-size', '56', '--overwrite'])
    assert tool.main([str(tmp_path / 'dinov2.pth'), str(tmp_path / 'x.pth'), '--img-size', '50']) == 1


def test_missing_attention_part_is_named():
    weights = dinov2_state_dict(hidden=64, layers=1)
    del weights['encoder.layer.0.attention.attention.key.bias']
    with pytest.raises(KeyError, match=r"block 0 lacks attention bias of \['key'\]"):
        dinov2_to_vit_state_dict(weights, (2, 2))
    with pytest.raises(KeyError, match='encoder.layer.0.extra'):
        dinov2_to_vit_state_dict(
            dict(dinov2_state_dict(hidden=64, layers=1), **{'encoder.layer.0.extra': torch.zeros(1)}), (2, 2))
