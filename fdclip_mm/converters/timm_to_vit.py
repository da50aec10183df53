"""timm-layout ViT (MAE, DINO, DeiT releases) -> mmpretrain ``VisionTransformer``.

mmpretrain's ``VisionTransformer`` (LayerNorm eps 1e-6, GELU, qkv bias) is the tower of these releases; only
the key map is missing. Per block ``i``::

    cls_token / pos_embed           -> cls_token / pos_embed
    patch_embed.proj.*              -> patch_embed.projection.*
    blocks.i.norm1.*                -> layers.i.ln1.*
    blocks.i.attn.qkv.* / proj.*    -> layers.i.attn.qkv.* / proj.*
    blocks.i.norm2.*                -> layers.i.ln2.*
    blocks.i.mlp.fc1.* / fc2.*      -> layers.i.ffn.layers.0.0.* / ffn.layers.1.*
    blocks.i.ls1.gamma / ls2.gamma  -> layers.i.attn.gamma1.weight / ffn.gamma2.weight
    norm.*                          -> ln1.*

MAE's decoder and mask token, the classifiers (``head``, ``fc_norm``, ``pre_logits``) and DINO's projection
head are not part of the encoder up to its final norm and are dropped.
"""
import re
from typing import Dict, Sequence

import torch

from fdclip_mm.checkpoint import read_checkpoint

Tensors = Dict[str, torch.Tensor]

IGNORED_PREFIXES = ('decoder', 'mask_token', 'head', 'fc_norm', 'pre_logits')
WRAPPER_KEYS = ('model', 'state_dict', 'teacher')
PREFIXES = ('module.', 'backbone.', 'encoder.')
STEM_MAP = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.proj.': 'patch_embed.projection.',
    'norm.': 'ln1.'
}
BLOCK_MAP = {
    'norm1.': 'ln1.',
    'attn.qkv.': 'attn.qkv.',
    'attn.proj.': 'attn.proj.',
    'norm2.': 'ln2.',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.',
    'ls1.gamma': 'attn.gamma1.weight',
    'ls2.gamma': 'ffn.gamma2.weight'
}
_BLOCK_RE = re.compile(r'^blocks\.(\d+)\.(.+)$')


def read_timm_vit_state_dict(path: str,
                             wrapper_keys: Sequence[str] = WRAPPER_KEYS,
                             prefixes: Sequence[str] = PREFIXES) -> Tensors:
    """Encoder tensors of a timm-layout ViT file (read with ``weights_only=True``), in timm names.

    Args:
        path: The published file.
        wrapper_keys: Keys that may hold the state dict (``'model'`` for MAE/DeiT, ``'teacher'`` for DINO's
            full training checkpoints); a bare state dict works too.
        prefixes: Key prefixes to strip (``'backbone.'`` of DINO's ``teacher`` dict, ``'module.'``).

    Raises:
        ValueError: The file holds no state dict.
    """
    ckpt = read_checkpoint(path)
    for key in wrapper_keys:
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path} holds a {type(ckpt).__name__}, not a state dict')
    state = {}
    for key, value in ckpt.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.startswith(IGNORED_PREFIXES) and isinstance(value, torch.Tensor):
            state[key] = value
    return state


def timm_to_vit_state_dict(timm: Tensors, source: str = 'state dict') -> Tensors:
    """mmpretrain ``VisionTransformer`` tensors (float32, ``final_norm=True``) from timm-layout ViT tensors.

    Raises:
        KeyError: A tensor has no counterpart (e.g. DeiT's distillation token), naming ``source``.
    """
    out: Tensors = {}
    for key, value in timm.items():
        value = value.float() if value.is_floating_point() else value
        old = next((o for o in STEM_MAP if key == o or (o.endswith('.') and key.startswith(o))), None)
        if old is not None:
            out[STEM_MAP[old] + key[len(old):]] = value
            continue
        match = _BLOCK_RE.match(key)
        rest = match.group(2) if match else ''
        old = next((o for o in BLOCK_MAP if match and rest.startswith(o)), None)
        if old is None:
            raise KeyError(f'{source}: no mmpretrain VisionTransformer counterpart for timm tensor {key!r} '
                           '(distillation tokens and register tokens are not supported)')
        out[f'layers.{match.group(1)}.' + BLOCK_MAP[old] + rest[len(old):]] = value
    return out
