"""Readers that map each teacher family's published file into its mmpretrain backbone's keys.

A reader takes the file's path and returns a state dict for the backbone ``BackboneTeacher`` wraps, which asks
for it by name (:func:`fdclip_mm.checkpoint.read_teacher_checkpoint`, through the ``TEACHER_READERS`` registry
that imports this module) and loads it exactly (every key used, none missing). Position embeddings stay at the
file's grid: the backbone's own load hook resizes them (bicubic) to its ``img_size``, once, at build time.

========================  ==================================================  =================================
reader                    files                                               backbone
========================  ==================================================  =================================
``'clip'``                OpenAI TorchScript archives (read without running   ``VisionTransformer``, CLIP form
                          pickled code), open_clip / OpenAI state dicts
``'timm_vit'``            MAE, DINO, DeiT releases (timm layout)              ``VisionTransformer``
``'dinov2'``              Hugging Face ``Dinov2Model`` weights (``.pth``; an  ``VisionTransformer``, ``dinov2-*``
                          ONNX export is converted once by
                          ``tools/model_converters/dinov2_onnx_to_pth.py``)
``'esvit_swin'``          EsViT's ``checkpoint_best.pth`` (Swin, authors'     ``SwinTransformer``
                          layout, under ``'teacher'``/``'student'``)
``'mmpretrain'``          an mmpretrain checkpoint (``backbone.`` keys)       any
========================  ==================================================  =================================
"""
from typing import Dict

import torch

from fdclip_mm.checkpoint import read_checkpoint, read_state_dict
from fdclip_mm.registry import TEACHER_READERS
from .clip_to_vit import clip_to_vit_state_dict
from .clip_weights import load_clip_visual_state_dict
from .dinov2_to_vit import dinov2_to_vit_state_dict, native_grid
from .dinov2_weights import load_dinov2_checkpoint
from .swin_to_mmpretrain import swin_to_mmpretrain_state_dict
from .timm_to_vit import read_timm_vit_state_dict, timm_to_vit_state_dict

Tensors = Dict[str, torch.Tensor]

#: Where EsViT's training checkpoints keep the backbone, in the order tried: the EMA teacher, then the student
#: (the official FD code reads ``'student'``; both are the same architecture).
ESVIT_KEYS = ('teacher', 'student')
_ESVIT_PREFIXES = ('module.', 'backbone.')
_ESVIT_HEADS = ('head.', 'head_dense.')


@TEACHER_READERS.register_module(name='clip')
def read_clip(path: str) -> Tensors:
    """A CLIP image tower (OpenAI archive or open_clip / OpenAI state dict) up to ``ln_post``."""
    return clip_to_vit_state_dict(load_clip_visual_state_dict(path), final_norm=True, head_norm=False)


@TEACHER_READERS.register_module(name='timm_vit')
def read_timm_vit(path: str) -> Tensors:
    """An MAE / DINO / DeiT ViT file in timm's layout, up to its final norm."""
    return timm_to_vit_state_dict(read_timm_vit_state_dict(path), source=path)


@TEACHER_READERS.register_module(name='dinov2')
def read_dinov2(path: str) -> Tensors:
    """DINOv2 weights in Hugging Face names (``.pth``), up to ``layernorm``."""
    weights = load_dinov2_checkpoint(path)
    return dinov2_to_vit_state_dict(weights, grid=native_grid(weights), final_norm=True, head_norm=False)


@TEACHER_READERS.register_module(name='esvit_swin')
def read_esvit_swin(path: str) -> Tensors:
    """EsViT's Swin backbone (its projection heads dropped) in mmpretrain ``SwinTransformer`` keys.

    Raises:
        ValueError: The file has none of :data:`ESVIT_KEYS` and is no bare state dict.
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path} holds a {type(ckpt).__name__}, not an EsViT checkpoint')
    state = next((ckpt[key] for key in ESVIT_KEYS if isinstance(ckpt.get(key), dict)), ckpt)
    backbone = {}
    for key, value in state.items():
        for prefix in _ESVIT_PREFIXES:
            key = key[len(prefix):] if key.startswith(prefix) else key
        if isinstance(value, torch.Tensor) and not key.startswith(_ESVIT_HEADS):
            backbone[key] = value
    return swin_to_mmpretrain_state_dict(backbone, source=path)


@TEACHER_READERS.register_module(name='mmpretrain')
def read_mmpretrain(path: str) -> Tensors:
    """The ``backbone.`` tensors of an mmpretrain checkpoint (or a bare backbone state dict)."""
    state = read_state_dict(path)
    if any(key.startswith('backbone.') for key in state):
        return read_state_dict(path, prefix='backbone.')
    return state
