"""Distilled student (or backbone checkpoint) -> mmpretrain ``ImageClassifier`` checkpoint with an FDViT backbone.

The classification backbone differs from the distillation student in three ways (as in BEiT / the official
FD fine-tuning code): one relative position bias table per layer (each a copy of the distilled shared table),
no final norm after the last block (``final_norm=False``; the student's ``ln1`` only served distillation) and
a fresh LayerNorm ``ln2`` on the mean of the patch tokens. The checkpoint is written in exactly that layout,
so ``ImageClassifier.backbone`` loads it with no missing and no unexpected key; the linear head is
initialised by the config.
"""
import os.path as osp
import re
from typing import Dict, Optional

import torch

from fdclip_mm.checkpoint import read_state_dict
from .fd_to_backbone import STUDENT_PREFIX, extract_student, resolve_checkpoint, save_state_dict

SHARED_RPB_KEY = 'rel_pos_bias.relative_position_bias_table'
LAYER_RPB_KEY = 'layers.{}.attn.rel_pos_bias.relative_position_bias_table'
BACKBONE_PREFIX = 'backbone.'

Tensors = Dict[str, torch.Tensor]


def num_layers_of(state_dict: Tensors) -> int:
    """Number of transformer blocks (``layers.N.``) in a backbone state dict."""
    indices = {int(m.group(1)) for k in state_dict for m in [re.match(r'layers\.(\d+)\.', k)] if m}
    if not indices:
        raise ValueError('the state dict has no "layers.N." keys: is it a ViT backbone?')
    return max(indices) + 1


def expand_shared_rpb(state_dict: Tensors, num_layers: Optional[int] = None) -> Tensors:
    """Replaces the shared RPB table by one copy per layer (``layers.N.attn.rel_pos_bias.*``).

    Args:
        state_dict: Backbone tensors; not modified.
        num_layers: Blocks to expand into; inferred from the keys by default.

    Returns:
        A new dict; unchanged (a shallow copy) when there is no shared table.
    """
    out = dict(state_dict)
    if SHARED_RPB_KEY not in out:
        return out
    shared = out.pop(SHARED_RPB_KEY)
    for i in range(num_layers if num_layers is not None else num_layers_of(state_dict)):
        out[LAYER_RPB_KEY.format(i)] = shared.clone()
    return out


def add_head_norm(state_dict: Tensors, key: str = 'ln2') -> Tensors:
    """Adds a freshly initialised LayerNorm (weight 1, bias 0) named ``key``, sized like the class token."""
    out = dict(state_dict)
    width = out['cls_token'].shape[-1]
    out.setdefault(f'{key}.weight', torch.ones(width))
    out.setdefault(f'{key}.bias', torch.zeros(width))
    return out


def student_to_classifier_backbone(student: Tensors,
                                   per_layer_rpb: bool = True,
                                   final_norm: bool = False,
                                   head_norm: bool = True) -> Tensors:
    """The FDViT classification backbone's tensors made from the distilled student's.

    Args:
        student: FDViT tensors (no prefix), e.g. from :func:`extract_student`.
        per_layer_rpb: Copy a shared RPB table into every layer (``pos_embed='rpb'`` backbones).
        final_norm: Keep the student's final norm ``ln1`` (for a backbone built with ``final_norm=True``).
        head_norm: Add the fresh ``ln2`` of ``out_type='avg_featmap'``.

    Returns:
        Backbone tensors, float32, without prefix.
    """
    out = {k: v.float() if v.is_floating_point() else v for k, v in student.items()}
    out = {k: v for k, v in out.items() if not k.endswith('relative_position_index')}
    if per_layer_rpb:
        out = expand_shared_rpb(out)
    if not final_norm:
        out = {k: v for k, v in out.items() if not k.startswith('ln1.')}
    if head_norm:
        out = add_head_norm(out)
    return out


def read_student(path: str) -> Tensors:
    """FDViT tensors of a distillation checkpoint (``student.*``), a backbone checkpoint (no prefix) or a
    classifier checkpoint (``backbone.*``); ``path`` may be a work dir (its last checkpoint)."""
    path = resolve_checkpoint(path)
    state = read_state_dict(path)
    if any(k.startswith(STUDENT_PREFIX) for k in state):
        return extract_student(state, path)
    if any(k.startswith(BACKBONE_PREFIX) for k in state):
        return {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    return dict(state)


def save_classifier_checkpoint(backbone: Tensors, dst: str, meta: Optional[dict] = None) -> None:
    """Writes ``{'state_dict': {'backbone.' + key: tensor}, 'meta': meta}`` to ``dst`` atomically."""
    save_state_dict({BACKBONE_PREFIX + k: v for k, v in backbone.items()}, dst, meta)


def convert_fd_to_classifier(src: str, dst: str, per_layer_rpb: bool = True, final_norm: bool = False) -> Tensors:
    """Distillation (or backbone) checkpoint ``src`` -> classifier checkpoint ``dst``; returns the backbone."""
    backbone = student_to_classifier_backbone(read_student(src), per_layer_rpb=per_layer_rpb, final_norm=final_norm)
    save_classifier_checkpoint(
        backbone, dst,
        dict(converted_from=osp.basename(resolve_checkpoint(src)), per_layer_rpb=per_layer_rpb, final_norm=final_norm))
    return backbone
