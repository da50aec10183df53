"""Shared fixtures: tiny checkpoints in the published key layouts, and tiny image folders."""
import os
import os.path as osp

import numpy as np
import pytest
import torch

# 'auto' precision resolves to float32 in every test (and in the tools the tests start), on every CPU: the
# numbers compared are the same everywhere and no test runs emulated bf16. Precision tests set it themselves.
os.environ['FDCLIP_CPU_BF16'] = '0'


def clip_visual_state_dict(width: int = 32, layers: int = 2, patch: int = 8, image: int = 32,
                           out_dim: int = 16, seed: int = 0) -> dict:
    """Random weights of an OpenAI-layout CLIP visual tower (``visual.`` keys, as in ``ViT-B-16.pt``)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, base=0.0):
        return base + 0.1 * torch.randn(*shape, generator=gen)

    grid = image // patch
    sd = {
        'conv1.weight': rand(width, 3, patch, patch),
        'class_embedding': rand(width),
        'positional_embedding': rand(grid * grid + 1, width),
        'ln_pre.weight': rand(width, base=1.0),
        'ln_pre.bias': rand(width),
        'ln_post.weight': rand(width, base=1.0),
        'ln_post.bias': rand(width),
        'proj': rand(width, out_dim),
    }
    for i in range(layers):
        p = f'transformer.resblocks.{i}.'
        sd.update({
            p + 'ln_1.weight': rand(width, base=1.0),
            p + 'ln_1.bias': rand(width),
            p + 'attn.in_proj_weight': rand(3 * width, width),
            p + 'attn.in_proj_bias': rand(3 * width),
            p + 'attn.out_proj.weight': rand(width, width),
            p + 'attn.out_proj.bias': rand(width),
            p + 'ln_2.weight': rand(width, base=1.0),
            p + 'ln_2.bias': rand(width),
            p + 'mlp.c_fc.weight': rand(4 * width, width),
            p + 'mlp.c_fc.bias': rand(4 * width),
            p + 'mlp.c_proj.weight': rand(width, 4 * width),
            p + 'mlp.c_proj.bias': rand(width),
        })
    return {'visual.' + k: v for k, v in sd.items()}


def dinov2_state_dict(hidden: int = 32, layers: int = 2, patch: int = 14, image: int = 28,
                      seed: int = 0) -> dict:
    """Random weights in Hugging Face ``Dinov2Model`` naming (the layout of the demo's real teacher)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, base=0.0):
        return base + 0.1 * torch.randn(*shape, generator=gen)

    grid = image // patch
    sd = {
        'embeddings.cls_token': rand(1, 1, hidden),
        'embeddings.mask_token': rand(1, hidden),
        'embeddings.position_embeddings': rand(1, grid * grid + 1, hidden),
        'embeddings.patch_embeddings.projection.weight': rand(hidden, 3, patch, patch),
        'embeddings.patch_embeddings.projection.bias': rand(hidden),
        'layernorm.weight': rand(hidden, base=1.0),
        'layernorm.bias': rand(hidden),
    }
    for i in range(layers):
        p = f'encoder.layer.{i}.'
        for name in ('query', 'key', 'value'):
            sd[p + f'attention.attention.{name}.weight'] = rand(hidden, hidden)
            sd[p + f'attention.attention.{name}.bias'] = rand(hidden)
        sd.update({
            p + 'norm1.weight': rand(hidden, base=1.0),
            p + 'norm1.bias': rand(hidden),
            p + 'attention.output.dense.weight': rand(hidden, hidden),
            p + 'attention.output.dense.bias': rand(hidden),
            p + 'layer_scale1.lambda1': rand(hidden, base=1.0),
            p + 'norm2.weight': rand(hidden, base=1.0),
            p + 'norm2.bias': rand(hidden),
            p + 'mlp.fc1.weight': rand(4 * hidden, hidden),
            p + 'mlp.fc1.bias': rand(4 * hidden),
            p + 'mlp.fc2.weight': rand(hidden, 4 * hidden),
            p + 'mlp.fc2.bias': rand(hidden),
            p + 'layer_scale2.lambda1': rand(hidden, base=1.0),
        })
    return sd


def timm_vit_state_dict(width: int = 32, depth: int = 2, patch: int = 8, image: int = 32, seed: int = 0) -> dict:
    """Random weights of a timm ``VisionTransformer`` (the layout MAE, DINO and DeiT publish)."""
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=image, patch_size=patch, embed_dim=width, depth=depth, num_heads=2,
                              num_classes=0)
    return model.state_dict()


@pytest.fixture
def tiny_clip_checkpoint(tmp_path):
    """A CLIP ViT (width 32, 2 layers, patch 8, 32 px) saved as a plain state dict; returns its path."""
    path = osp.join(tmp_path, 'tiny_clip.pth')
    torch.save(clip_visual_state_dict(), path)
    return path


def write_image_folder(root: str, count: int, size=(40, 48), seed: int = 0) -> str:
    """``count`` random RGB JPEGs under ``root`` (no labels); returns ``root``."""
    import mmcv
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mmcv.imwrite(img, osp.join(root, f'img_{i:03d}.jpg'))
    return root


@pytest.fixture
def image_folder(tmp_path):
    """``train/`` with 8 and ``val/`` with 4 random images, in ``tmp_path/images``."""
    root = osp.join(tmp_path, 'images')
    write_image_folder(osp.join(root, 'train'), 8, seed=0)
    write_image_folder(osp.join(root, 'val'), 4, seed=1)
    return root


def scheduled_lrs(param_scheduler, param_groups, epoch_length: int, steps, batch_ratio: float = 1.0):
    """The lr of each group at each of ``steps`` (iterations) under a config's ``param_scheduler`` list.

    ``param_groups`` are dicts (``lr`` and optionally ``lr_scale``); ``batch_ratio`` multiplies every group's lr
    before the schedulers are built, as mmengine's ``Runner.scale_lr`` does for ``--auto-scale-lr``.
    """
    import copy

    from mmengine.registry import PARAM_SCHEDULERS, DefaultScope, init_default_scope
    groups = [dict(g, params=[torch.nn.Parameter(torch.zeros(1))]) for g in param_groups]
    optimizer = torch.optim.SGD(groups, lr=groups[0]['lr'])
    for group in optimizer.param_groups:
        group['lr'] *= batch_ratio
    schedulers = []
    with DefaultScope.overwrite_default_scope('mmengine'):
        init_default_scope('mmengine')
        import fdclip_mm  # noqa: F401
        for cfg in copy.deepcopy(param_scheduler):
            cfg = dict(cfg)
            if cfg.pop('convert_to_iter_based', False):
                cls = PARAM_SCHEDULERS.get(cfg.pop('type'))
                schedulers.append(cls.build_iter_from_epoch(optimizer, epoch_length=epoch_length, **cfg))
            else:
                schedulers.append(PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer)))
    wanted, out = set(steps), {}
    for step in range(max(steps) + 1):
        if step in wanted:
            out[step] = [g['lr'] for g in optimizer.param_groups]
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return [out[s] for s in steps]
