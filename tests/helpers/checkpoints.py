"""Tiny checkpoints in the published key layouts (OpenAI CLIP, Hugging Face DINOv2, timm, Swin / EsViT) and the
arch dicts and teacher configs that read them."""
import torch


def tiny_vit_arch(width: int = 32, layers: int = 2, heads: int = 2, mlp_ratio: int = 4) -> dict:
    """mmpretrain ``VisionTransformer`` / ``FDViT`` arch dict of a tiny tower."""
    return dict(embed_dims=width, num_layers=layers, num_heads=heads, feedforward_channels=mlp_ratio * width)


def clip_visual_state_dict(width: int = 32,
                           layers: int = 2,
                           patch: int = 8,
                           image: int = 32,
                           out_dim: int = 16,
                           seed: int = 0) -> dict:
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


def dinov2_state_dict(hidden: int = 32, layers: int = 2, patch: int = 14, image: int = 28, seed: int = 0) -> dict:
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
    model = VisionTransformer(
        img_size=image, patch_size=patch, embed_dim=width, depth=depth, num_heads=2, num_classes=0)
    return model.state_dict()


def tiny_teacher_cfg(family: str,
                     path: str,
                     width: int = 32,
                     layers: int = 2,
                     heads: int = 2,
                     patch: int = 8,
                     image: int = 32,
                     img_size=None,
                     seed: int = 0,
                     dtype=None) -> dict:
    """Writes a random checkpoint of ``family`` in its published layout to ``path``; returns the teacher config.

    ``family``: ``'clip'`` (OpenAI layout), ``'dinov2'`` (Hugging Face names) or ``'timm_vit'`` (``{'model': ...}``).
    """
    from fdclip_mm.models.teachers import teacher_config
    if family == 'clip':
        torch.save(clip_visual_state_dict(width=width, layers=layers, patch=patch, image=image, seed=seed), path)
    elif family == 'dinov2':
        torch.save(dinov2_state_dict(hidden=width, layers=layers, patch=patch, image=image, seed=seed), path)
    elif family == 'timm_vit':
        torch.save({'model': timm_vit_state_dict(width=width, depth=layers, patch=patch, image=image, seed=seed)}, path)
    else:
        raise NotImplementedError(f'no tiny checkpoint for teacher family {family}')
    return teacher_config(
        family,
        path,
        arch=tiny_vit_arch(width, layers, heads),
        patch_size=patch,
        img_size=img_size if img_size is not None else image,
        dtype=dtype)


def swin_authors_state_dict(arch: dict,
                            window_size: int = 7,
                            img_size: int = 224,
                            stage_cfgs=None,
                            seed: int = 0) -> dict:
    """Random Swin weights in its authors' layout (microsoft/Swin-Transformer, EsViT), buffers included.

    Made from a random mmpretrain ``SwinTransformer`` of ``arch`` by the inverse of our key map (patch merging
    channels put back in the authors' order), so that a reader's output can be checked against the model it
    came from and against timm's own conversion of the same file.
    """
    from mmpretrain.models import SwinTransformer
    torch.manual_seed(seed)
    model = SwinTransformer(
        arch=arch,
        img_size=img_size,
        window_size=window_size,
        stage_cfgs=stage_cfgs or dict(),
        out_indices=(len(arch['depths']) - 1, ))
    last = len(arch['depths']) - 1
    out = {}
    for key, value in model.state_dict().items():
        value = value + 0.1 * torch.randn_like(value) if value.is_floating_point() else value
        key = key.replace('patch_embed.projection.', 'patch_embed.proj.').replace('.attn.w_msa.', '.attn.')
        key = key.replace('.ffn.layers.0.0.', '.mlp.fc1.').replace('.ffn.layers.1.', '.mlp.fc2.')
        key = key.replace(f'norm{last}.', 'norm.') if key.startswith(f'norm{last}.') else key
        if key.startswith('stages.'):
            key = 'layers.' + key[len('stages.'):]
        if '.downsample.' in key:  # nn.Unfold's per-channel order -> the authors' whole-block order
            channels = value.shape[-1] // 4
            value = value.reshape(*value.shape[:-1], channels, 4).transpose(-1, -2)[..., [0, 2, 1, 3], :]
            value = value.reshape(*value.shape[:-2], 4 * channels)
        out[key] = value
    return out


def esvit_checkpoint(path: str,
                     arch: dict,
                     window_size: int = 7,
                     img_size: int = 224,
                     stage_cfgs=None,
                     seed: int = 0) -> dict:
    """An EsViT ``checkpoint_best.pth`` look-alike: DDP-prefixed student and teacher, projection heads included.

    Returns the authors'-layout backbone tensors it holds (under both ``student`` and ``teacher``).
    """
    backbone = swin_authors_state_dict(arch, window_size, img_size, stage_cfgs, seed)
    width = arch['embed_dims'] * 2**(len(arch['depths']) - 1)
    heads = {
        'head.mlp.0.weight': torch.randn(16, width),
        'head.last_layer.weight_g': torch.ones(1, 8),
        'head_dense.mlp.0.weight': torch.randn(16, width)
    }
    wrapped = {'module.backbone.' + k: v for k, v in backbone.items()}
    wrapped.update({'module.' + k: v for k, v in heads.items()})
    torch.save(dict(student=wrapped, teacher={'backbone.' + k: v for k, v in backbone.items()}, epoch=300), path)
    return backbone


CLIP_ARCH = tiny_vit_arch(32, 2, 2)


def mmpretrain_clip_vit(final_norm: bool, out_type: str) -> dict:
    """The config of mmpretrain's ``VisionTransformer`` in CLIP's form (pre-norm, QuickGELU) of :data:`CLIP_ARCH`."""
    return dict(
        type='VisionTransformer',
        arch=CLIP_ARCH,
        img_size=32,
        patch_size=8,
        pre_norm=True,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        out_type=out_type,
        final_norm=final_norm)
