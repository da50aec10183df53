"""Tiny students: an FDViT with random weights, and one of each student family the distiller takes."""
import torch

from fdclip_mm.models.backbones import FDViT
from .checkpoints import tiny_vit_arch

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every parameter random values, so RPB tables, norms and layer scales all matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.eval()
    return model


def tiny(pos_embed='shared_rpb', **kwargs):
    """A tiny FDViT (32 px, patch 8, :data:`ARCH`); ``kwargs`` override."""
    kwargs.setdefault('img_size', 32)
    kwargs.setdefault('patch_size', 8)
    kwargs.setdefault('arch', ARCH)
    return FDViT(pos_embed=pos_embed, **kwargs)


VIT_ARCH = tiny_vit_arch(32, 2, 2, mlp_ratio=2)

# (student config, student output grid on 32-px images, whether it has a class token)
STUDENTS = {
    'fdvit': (dict(type='FDViT', arch=VIT_ARCH, img_size=32, patch_size=8, drop_path_rate=0.1), (4, 4), True),
    'fdvit-p16': (dict(type='FDViT', arch=VIT_ARCH, img_size=32, patch_size=16), (2, 2), True),
    'vit': (dict(type='mmpretrain.VisionTransformer', arch=VIT_ARCH, img_size=32, patch_size=8,
                 out_type='raw'), (4, 4), True),
    'swin': (dict(
        type='mmpretrain.SwinTransformer',
        arch=dict(embed_dims=16, depths=[2, 2], num_heads=[1, 2]),
        img_size=32,
        window_size=4,
        out_indices=(1, ),
        drop_path_rate=0.1), (4, 4), False),
    'swin-v2': (dict(
        type='mmpretrain.SwinTransformerV2',
        arch=dict(embed_dims=16, depths=[2, 2], num_heads=[1, 2], extra_norm_every_n_blocks=0),
        img_size=32,
        window_size=[4, 4],
        out_indices=(1, ),
        drop_path_rate=0.1), (4, 4), False),
    'swin-s32': (dict(
        type='mmpretrain.SwinTransformer',
        arch=dict(embed_dims=16, depths=[1, 1, 1], num_heads=[1, 2, 4]),
        img_size=32,
        window_size=2,
        out_indices=(2, )), (2, 2), False),
    'convnext': (dict(
        type='mmpretrain.ConvNeXt',
        arch=dict(depths=[1, 1], channels=[16, 32]),
        out_indices=(1, ),
        gap_before_final_norm=False,
        drop_path_rate=0.1), (4, 4), False),
    'resnet': (dict(type='mmpretrain.ResNet', depth=18, out_indices=(1, )), (4, 4), False),
}
