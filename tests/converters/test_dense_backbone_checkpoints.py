"""Backbone checkpoints for mmdet/mmseg: a distilled student and OpenAI CLIP load strictly into the dense backbones."""
import sys

import torch
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner.checkpoint import load_checkpoint

from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.feature_map import feature_tokens
from fdclip_mm.registry import MODELS
from ..helpers.checkpoints import CLIP_ARCH, mmpretrain_clip_vit
from ..helpers.scripts import load_script

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def test_distillation_checkpoint_to_dense_backbone(tiny_clip_teacher, tmp_path, monkeypatch):
    distiller = FeatureDistiller(
        student=dict(type='FDViT', arch=ARCH, img_size=32, patch_size=8, pos_embed='shared_rpb'),
        teacher=tiny_clip_teacher)
    with torch.no_grad():
        distiller.student.rel_pos_bias.relative_position_bias_table.normal_()
    src, dst = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': distiller.state_dict(), 'meta': {}}, src)
    monkeypatch.setattr(sys, 'argv', ['fd_to_backbone.py', src, dst])
    load_script('tools/model_converters/fd_to_backbone.py').main()

    # The dense backbone: per-layer RPB, no final norm, feature maps of two blocks, a 64-px task resolution.
    dense = FDViT(
        arch=ARCH, img_size=64, patch_size=8, pos_embed='rpb', out_type='featmap', out_indices=(0, 1), final_norm=False)
    load_checkpoint(dense, dst, map_location='cpu', strict=True)  # raises on any missing or unexpected key
    table = distiller.student.rel_pos_bias.relative_position_bias_table
    for layer in dense.layers:
        assert layer.attn.rel_pos_bias.relative_position_bias_table.shape[0] == 15 * 15 + 3
        torch.testing.assert_close(layer.attn.rel_pos_bias.relative_position_bias_table[-3:], table[-3:])
    dense.eval()
    student = FDViT(arch=ARCH, img_size=64, patch_size=8, pos_embed='shared_rpb').eval()  # the student at 64 px,
    load_checkpoint(student, dst, map_location='cpu', strict=True)  # its table resized as the dense one's
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens = student.forward_features(x)
        last = dense(x)[-1]
    torch.testing.assert_close(student.ln1(last.flatten(2).transpose(1, 2)), tokens[:, 1:], atol=1e-4, rtol=1e-4)


def test_clip_to_dense_backbone(tiny_clip_checkpoint, tiny_clip_teacher, tmp_path, monkeypatch):
    from mmpretrain.models import VisionTransformer
    dst = str(tmp_path / 'clip_backbone.pth')
    monkeypatch.setattr(sys, 'argv', ['clip_to_backbone.py', tiny_clip_checkpoint, dst])
    load_script('tools/model_converters/clip_to_backbone.py').main()
    vits = {}
    for size in (32, 64):
        cfg = mmpretrain_clip_vit(final_norm=False, out_type='featmap')
        cfg.pop('type')
        cfg.update(img_size=size, out_indices=(0, 1))
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            init_default_scope('mmpretrain')
            vits[size] = VisionTransformer(**cfg)
        load_checkpoint(vits[size], dst, map_location='cpu', strict=True)  # raises on missing/unexpected keys
    assert vits[64].pos_embed.shape == (1, 1 + 64, CLIP_ARCH['embed_dims'])  # resized from 32 px's 4x4 grid

    vit = vits[32]
    vit.eval()  # mmpretrain backbones return None from train()/eval()
    teacher = MODELS.build(tiny_clip_teacher).eval()
    x = torch.randn(1, 3, 32, 32)
    ln_post = torch.nn.LayerNorm(CLIP_ARCH['embed_dims'], eps=1e-5)
    visual = torch.load(tiny_clip_checkpoint, weights_only=True)
    ln_post.load_state_dict({'weight': visual['visual.ln_post.weight'], 'bias': visual['visual.ln_post.bias']})
    with torch.no_grad():
        last = vit(x)[-1]
        tokens = feature_tokens(teacher(x), with_cls=True)  # ends with ln_post, which the dense backbone leaves out
        assert last.shape == (1, CLIP_ARCH['embed_dims'], 4, 4)
        torch.testing.assert_close(ln_post(last.flatten(2).transpose(1, 2)), tokens[:, 1:], atol=1e-4, rtol=1e-4)
