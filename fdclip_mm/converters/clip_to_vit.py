"""OpenAI CLIP visual tower -> mmpretrain ``VisionTransformer`` (the "fine-tune CLIP itself" baseline).

Why mmpretrain's ``VisionTransformer`` and not a backbone of ours: with ``pre_norm=True`` (CLIP's
``ln_pre``, and no patch-embedding bias), ``qkv_bias=True``, LayerNorm eps 1e-5 and QuickGELU through
``layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU'))`` it *is* CLIP's image tower, and it already has
drop path, ``out_type='avg_featmap'`` (mean of patch tokens -> ``ln2``), position-embedding resizing and
``get_layer_depth`` (which puts ``pre_norm`` at the top depth, as the BEiT-style ``get_num_layer_for_vit`` of
the official FD / FT-CLIP code does for ``ln_pre``). Only the key map is missing; it is here.

Key map (OpenAI -> mmpretrain), per block ``i``::

    conv1.weight                     -> patch_embed.projection.weight
    class_embedding (C)              -> cls_token (1, 1, C)
    positional_embedding (1+N, C)    -> pos_embed (1, 1+N, C)
    ln_pre.*                         -> pre_norm.*
    transformer.resblocks.i.ln_1.*   -> layers.i.ln1.*
    ...attn.in_proj_weight / _bias   -> layers.i.attn.qkv.weight / .bias
    ...attn.out_proj.*               -> layers.i.attn.proj.*
    ...ln_2.*                        -> layers.i.ln2.*
    ...mlp.c_fc.*                    -> layers.i.ffn.layers.0.0.*
    ...mlp.c_proj.*                  -> layers.i.ffn.layers.1.*
    ln_post.*                        -> ln1.* (only for final_norm=True)
    proj                             -> dropped (the 512/768-d text-space projection)
"""
import re
from typing import Dict

import torch

from .clip_weights import load_clip_visual_state_dict
from .to_classifier import add_head_norm

Tensors = Dict[str, torch.Tensor]

STEM_MAP = {
    'conv1.weight': 'patch_embed.projection.weight',
    'ln_pre.weight': 'pre_norm.weight',
    'ln_pre.bias': 'pre_norm.bias',
}
BLOCK_MAP = {
    'ln_1.': 'ln1.',
    'attn.in_proj_weight': 'attn.qkv.weight',
    'attn.in_proj_bias': 'attn.qkv.bias',
    'attn.out_proj.': 'attn.proj.',
    'ln_2.': 'ln2.',
    'mlp.c_fc.': 'ffn.layers.0.0.',
    'mlp.c_proj.': 'ffn.layers.1.',
}
_BLOCK_RE = re.compile(r'^transformer\.resblocks\.(\d+)\.(.+)$')


def clip_to_vit_state_dict(visual: Tensors, final_norm: bool = False, head_norm: bool = True) -> Tensors:
    """mmpretrain ``VisionTransformer`` tensors (float32) from a CLIP visual tower in OpenAI naming.

    Args:
        visual: The tower's tensors without the ``visual.`` prefix (see ``load_clip_visual_state_dict``).
        final_norm: Map ``ln_post`` to ``ln1`` (a backbone with ``final_norm=True``); otherwise drop it, as
            the classifier (mean of patch tokens -> ``ln2``) has no final norm.
        head_norm: Add a fresh ``ln2`` (``out_type='avg_featmap'``).

    Returns:
        The backbone's tensors without prefix.

    Raises:
        KeyError: A tensor of ``visual`` has no counterpart (e.g. an open_clip variant with extra layers).
    """
    out: Tensors = {}
    for key, value in visual.items():
        value = value.float() if value.is_floating_point() else value
        if key in STEM_MAP:
            out[STEM_MAP[key]] = value
        elif key == 'class_embedding':
            out['cls_token'] = value.reshape(1, 1, -1)
        elif key == 'positional_embedding':
            out['pos_embed'] = value.unsqueeze(0)
        elif key.startswith('ln_post.'):
            if final_norm:
                out['ln1.' + key[len('ln_post.'):]] = value
        elif key == 'proj':
            continue
        else:
            match = _BLOCK_RE.match(key)
            rest = match.group(2) if match else None
            old = next((o for o in BLOCK_MAP if rest is not None and rest.startswith(o)), None)
            if old is None:
                raise KeyError(f'no mmpretrain VisionTransformer counterpart for CLIP tensor {key!r}')
            out[f'layers.{match.group(1)}.' + BLOCK_MAP[old] + rest[len(old):]] = value
    return add_head_norm(out) if head_norm else out


def load_clip_as_vit(path: str, final_norm: bool = False, head_norm: bool = True) -> Tensors:
    """Reads a CLIP checkpoint (OpenAI archive or state dict, never unpickling code) as ViT tensors."""
    return clip_to_vit_state_dict(load_clip_visual_state_dict(path), final_norm=final_norm, head_norm=head_norm)
