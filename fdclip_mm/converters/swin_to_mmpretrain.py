"""Swin Transformer in its authors' layout (microsoft/Swin-Transformer, EsViT) -> mmpretrain ``SwinTransformer``.

Per stage ``s`` and block ``b``::

    patch_embed.proj.* / patch_embed.norm.*   -> patch_embed.projection.* / patch_embed.norm.*
    layers.s.blocks.b.norm1.* / norm2.*       -> stages.s.blocks.b.norm1.* / norm2.*
    layers.s.blocks.b.attn.qkv.* / proj.*     -> stages.s.blocks.b.attn.w_msa.qkv.* / proj.*
    ...attn.relative_position_bias_table      -> ...attn.w_msa.relative_position_bias_table
    layers.s.blocks.b.mlp.fc1.* / fc2.*       -> stages.s.blocks.b.ffn.layers.0.0.* / ffn.layers.1.*
    layers.s.downsample.reduction / norm      -> stages.s.downsample.reduction / norm (channels reordered)
    norm.*                                    -> norm{last stage}.*

``relative_position_index`` and ``attn_mask`` are buffers both implementations compute; they are dropped.

Patch merging concatenates the four pixels of each 2x2 cell. The authors' code takes them in the order
(row 0, col 0), (1, 0), (0, 1), (1, 1) and stacks whole C-channel blocks; mmpretrain's ``nn.Unfold`` interleaves
them per channel in the order (0, 0), (0, 1), (1, 0), (1, 1). :func:`unfold_order` permutes the merged channels
of the reduction weight and the norm accordingly.
"""
import re
from typing import Dict

import torch

Tensors = Dict[str, torch.Tensor]

_COMPUTED_BUFFERS = ('relative_position_index', 'attn_mask')
_BLOCK_MAP = {
    'norm1.': 'norm1.',
    'norm2.': 'norm2.',
    'attn.qkv.': 'attn.w_msa.qkv.',
    'attn.proj.': 'attn.w_msa.proj.',
    'attn.relative_position_bias_table': 'attn.w_msa.relative_position_bias_table',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.'
}
_BLOCK_RE = re.compile(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$')
_MERGE_RE = re.compile(r'^layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$')
#: Position, in the authors' concatenation, of each pixel of a 2x2 cell in ``nn.Unfold``'s order.
_AUTHORS_INDEX_OF_UNFOLD = (0, 2, 1, 3)


def unfold_order(merged: torch.Tensor) -> torch.Tensor:
    """Reorders the last dimension (4C merged channels) from the authors' block layout to ``nn.Unfold``'s."""
    channels = merged.shape[-1] // 4
    blocks = merged.reshape(*merged.shape[:-1], 4, channels)[..., list(_AUTHORS_INDEX_OF_UNFOLD), :]
    return blocks.transpose(-1, -2).reshape(merged.shape)


def swin_to_mmpretrain_state_dict(swin: Tensors, source: str = 'state dict') -> Tensors:
    """mmpretrain ``SwinTransformer`` tensors (float32) from a Swin backbone in the authors' names.

    Raises:
        KeyError: A tensor has no counterpart (e.g. a classifier head left in), naming ``source``.
    """
    stages = {int(m.group(1)) for m in map(_BLOCK_RE.match, swin) if m}
    if not stages:
        raise KeyError(f'{source} has no Swin blocks (layers.<s>.blocks.<b>.*); found e.g. {sorted(swin)[:5]}')
    out: Tensors = {}
    for key, value in swin.items():
        value = value.float() if value.is_floating_point() else value
        if key.endswith(_COMPUTED_BUFFERS):
            continue
        if key.startswith('patch_embed.'):
            out[key.replace('patch_embed.proj.', 'patch_embed.projection.')] = value
        elif key.startswith('norm.'):
            out[f'norm{max(stages)}.' + key[len('norm.'):]] = value
        elif _MERGE_RE.match(key):
            stage, part, kind = _MERGE_RE.match(key).groups()
            out[f'stages.{stage}.downsample.{part}.{kind}'] = unfold_order(value)
        else:
            match = _BLOCK_RE.match(key)
            rest = match.group(3) if match else ''
            old = next((o for o in _BLOCK_MAP if match and rest.startswith(o)), None)
            if old is None:
                raise KeyError(f'{source}: no mmpretrain SwinTransformer counterpart for Swin tensor {key!r}')
            out[f'stages.{match.group(1)}.blocks.{match.group(2)}.' + _BLOCK_MAP[old] + rest[len(old):]] = value
    return out
