"""Key maps from the official FD code's models to ours: its BEiT-style ``VisionTransformer`` -> ``FDViT``, its
``SwinTransformerV2`` -> mmpretrain's ``SwinTransformerV2``.

ViT, per block ``i`` (the distilled student shares one RPB table, ``rel_pos_bias.*``; the fine-tuned model has one
per block and pools with ``fc_norm``)::

    cls_token / pos_embed                       -> cls_token / pos_embed
    patch_embed.proj.*                          -> patch_embed.projection.*
    rel_pos_bias.relative_position_bias_table   -> rel_pos_bias.relative_position_bias_table
    blocks.i.norm1.* / norm2.*                  -> layers.i.ln1.* / ln2.*
    blocks.i.attn.qkv.weight, q_bias, v_bias    -> layers.i.attn.qkv.weight, q_bias, v_bias
    blocks.i.attn.relative_position_bias_table  -> layers.i.attn.rel_pos_bias.relative_position_bias_table
    blocks.i.attn.proj.*                        -> layers.i.attn.proj.*
    blocks.i.mlp.fc1.* / fc2.*                  -> layers.i.ffn.layers.0.0.* / ffn.layers.1.*
    blocks.i.gamma_1 / gamma_2                  -> layers.i.gamma_1 / gamma_2
    norm.*  (distilled: after the last block)   -> ln1.*
    fc_norm.*  (fine-tuned: on the mean token)  -> ln2.*

SwinV2, per stage ``s`` and block ``b`` (the official code merges patches at the end of a stage, mmpretrain at the
start of the next; the official pre-release SwinV2 calls the position-bias MLP ``rpe_mlp``, mmpretrain
``cpb_mlp``)::

    patch_embed.proj.* / patch_embed.norm.*     -> patch_embed.projection.* / patch_embed.norm.*
    layers.s.blocks.b.norm1.* / norm2.*         -> stages.s.blocks.b.norm1.* / norm2.*
    layers.s.blocks.b.attn.X                    -> stages.s.blocks.b.attn.w_msa.X  (qkv, proj, q_bias, v_bias,
                                                   logit_scale, relative_coords_table, relative_position_index)
    layers.s.blocks.b.attn.rpe_mlp.*            -> stages.s.blocks.b.attn.w_msa.cpb_mlp.*
    layers.s.blocks.b.mlp.fc1.* / fc2.*         -> stages.s.blocks.b.ffn.layers.0.0.* / ffn.layers.1.*
    layers.s.downsample.reduction.weight        -> stages.(s+1).downsample.reduction.weight (inputs reordered)
    layers.s.downsample.norm.*                  -> stages.(s+1).downsample.norm.*
    norm.*                                      -> norm{last stage}.*

The buffers both sides compute (ViT ``relative_position_index``, Swin ``attn_mask``) are dropped; the Swin
position tables are kept, under mmpretrain's names, because mmpretrain's ``state_dict`` has them. The classifier
``head.*`` is left to the caller. Any other key is refused with its name.
"""
import re
from typing import Callable, Dict, Optional, Tuple

import torch

from .swin_to_mmpretrain import unfold_order

Tensors = Dict[str, torch.Tensor]

_VIT_STEM = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
    'rel_pos_bias.relative_position_bias_table': 'rel_pos_bias.relative_position_bias_table',
    'norm.weight': 'ln1.weight',
    'norm.bias': 'ln1.bias',
    'fc_norm.weight': 'ln2.weight',
    'fc_norm.bias': 'ln2.bias',
}
_VIT_BLOCK = {
    'norm1.': 'ln1.',
    'norm2.': 'ln2.',
    'attn.qkv.weight': 'attn.qkv.weight',
    'attn.q_bias': 'attn.q_bias',
    'attn.v_bias': 'attn.v_bias',
    'attn.relative_position_bias_table': 'attn.rel_pos_bias.relative_position_bias_table',
    'attn.proj.': 'attn.proj.',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.',
    'gamma_1': 'gamma_1',
    'gamma_2': 'gamma_2',
}
_SWIN_BLOCK = {
    'norm1.': 'norm1.',
    'norm2.': 'norm2.',
    'attn.rpe_mlp.': 'attn.w_msa.cpb_mlp.',
    'attn.': 'attn.w_msa.',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.',
}
_SWIN_ATTN_KEYS = ('qkv.weight', 'proj.weight', 'proj.bias', 'q_bias', 'v_bias', 'logit_scale', 'relative_coords_table',
                   'relative_position_index')
_VIT_BLOCK_RE = re.compile(r'^blocks\.(\d+)\.(.+)$')
_SWIN_BLOCK_RE = re.compile(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$')
_SWIN_MERGE_RE = re.compile(r'^layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$')
HEAD_PREFIX = 'head.'


class OfficialKeyError(KeyError):
    """A tensor of an official FD file with no counterpart in our model; the message names it and the file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


def _renamed(rest: str, table: Dict[str, str]) -> Optional[str]:
    """``rest`` with the first matching prefix of ``table`` replaced, or None."""
    old = next((o for o in table if rest.startswith(o)), None)
    return None if old is None else table[old] + rest[len(old):]


def _convert(state: Tensors, source: str, rename: Callable[[str], Optional[str]], what: str) -> Tensors:
    out: Tensors = {}
    for key, value in state.items():
        if key.startswith(HEAD_PREFIX):
            continue
        new = rename(key)
        if new is None:
            raise OfficialKeyError(f'{source}: the tensor {key!r} has no counterpart in {what}; this tool reads the '
                                   'models of the official FD code as released (see docs/en/user_guides/'
                                   'released_models.md)')
        if new:
            out[new] = value.float() if value.is_floating_point() else value
    return out


def official_vit_to_fdvit(state: Tensors, source: str = 'state dict') -> Tensors:
    """``FDViT`` tensors (float32) from the official ViT's (``head.*`` skipped; a k bias is refused).

    Raises:
        OfficialKeyError: A tensor has no counterpart, naming it and ``source``.
    """

    def rename(key: str) -> Optional[str]:
        if key.endswith('relative_position_index'):
            return ''
        if key in _VIT_STEM:
            return _VIT_STEM[key]
        match = _VIT_BLOCK_RE.match(key)
        new = _renamed(match.group(2), _VIT_BLOCK) if match else None
        return None if new is None else f'layers.{match.group(1)}.{new}'

    return _convert(state, source, rename, 'FDViT')


def official_swinv2_to_mmpretrain(state: Tensors, source: str = 'state dict') -> Tensors:
    """mmpretrain ``SwinTransformerV2`` tensors (float32) from the official SwinV2's (``head.*`` skipped).

    Raises:
        OfficialKeyError: A tensor has no counterpart (e.g. a stage-shared position-bias MLP), naming it.
    """
    stages = {int(m.group(1)) for m in map(_SWIN_BLOCK_RE.match, state) if m}
    if not stages:
        raise OfficialKeyError(f'{source} has no Swin blocks (layers.<s>.blocks.<b>.*)')
    last = max(stages)

    def rename(key: str) -> Optional[str]:
        if key.endswith('attn_mask'):
            return ''
        if key.startswith('patch_embed.'):
            return key.replace('patch_embed.proj.', 'patch_embed.projection.')
        if key.startswith('norm.'):
            return f'norm{last}.' + key[len('norm.'):]
        merge = _SWIN_MERGE_RE.match(key)
        if merge:
            stage, part, kind = merge.groups()
            return f'stages.{int(stage) + 1}.downsample.{part}.{kind}'
        match = _SWIN_BLOCK_RE.match(key)
        rest = match.group(3) if match else ''
        if rest.startswith('attn.') and not rest.startswith('attn.rpe_mlp.') and \
                rest[len('attn.'):] not in _SWIN_ATTN_KEYS:
            return None
        new = _renamed(rest, _SWIN_BLOCK) if match else None
        return None if new is None else f'stages.{match.group(1)}.blocks.{match.group(2)}.{new}'

    out = _convert(state, source, rename, "mmpretrain's SwinTransformerV2")
    for key in [k for k in out if k.endswith('downsample.reduction.weight')]:
        out[key] = unfold_order(out[key])  # post-norm merging: only the reduction's inputs are in pixel order
    return out


def split_head(state: Tensors) -> Tuple[Tensors, Tensors]:
    """``(head tensors as mmpretrain's LinearClsHead names them, the rest)`` of a fine-tuned official model."""
    head = {f'fc.{k[len(HEAD_PREFIX):]}': v.float() for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    return head, {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
