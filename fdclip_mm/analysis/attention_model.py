"""Finding the attention-capable part of a model and the input statistics it expects."""
from typing import List, Tuple

import torch
from torch import nn

from fdclip_mm.models.image_statistics import IMAGENET_MEAN, IMAGENET_STD

PARTS = ('auto', 'self', 'student', 'teacher', 'backbone')


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / mmengine model wrappers."""
    while hasattr(model, 'module') and isinstance(model.module, nn.Module):
        model = model.module
    return model


def resolve_attention_module(model: nn.Module, part: str = 'auto') -> nn.Module:
    """The sub-module whose ``forward_attention`` to analyse.

    Args:
        model: A backbone or teacher (``'self'``), a :class:`FeatureDistiller` (``'student'`` / ``'teacher'``)
            or a classifier / detector / segmentor (``'backbone'``). Wrappers are unwrapped.
        part: One of ``auto, self, student, teacher, backbone``. ``auto`` picks the model itself, then its
            student, then its backbone.

    Raises:
        ValueError: for an unknown ``part``.
        TypeError: if the chosen module has no ``forward_attention``.
    """
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    model = unwrap(model)
    candidates = ['self', 'student', 'backbone'] if part == 'auto' else [part]
    for name in candidates:
        module = model if name == 'self' else getattr(model, name, None)
        if module is not None and callable(getattr(module, 'forward_attention', None)):
            return module
    raise TypeError(f'{type(model).__name__} has no {"/".join(candidates)} module with forward_attention(x)')


def input_statistics(model: nn.Module, module: nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(mean, std) on the 0-255 RGB scale that ``module`` expects.

    A teacher carries its own statistics; otherwise the model's data preprocessor's ``mean``/``std`` (the
    student's for a distiller); ImageNet's when neither is there.
    """
    if isinstance(getattr(module, 'mean', None), tuple) and isinstance(getattr(module, 'std', None), tuple):
        return module.mean, module.std
    preprocessor = getattr(unwrap(model), 'data_preprocessor', None)
    mean, std = getattr(preprocessor, 'mean', None), getattr(preprocessor, 'std', None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor) and mean.numel() == 3:
        return tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())
    return IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def collect_attention(module: nn.Module, images: torch.Tensor) -> List[torch.Tensor]:
    """``module.forward_attention(images)`` in eval mode (no drop path / dropout); the mode is restored."""
    was_training = module.training
    module.eval()
    try:
        return [attn.float() for attn in module.forward_attention(images)]
    finally:
        module.train(was_training)


def patch_size_of(module: nn.Module) -> int:
    """The module's patch size in pixels (``patch_size`` attribute, int or pair)."""
    size = getattr(module, 'patch_size', None)
    if isinstance(size, (tuple, list)):
        size = size[0]
    if not isinstance(size, int):
        raise TypeError(f'{type(module).__name__} has no integer patch_size')
    return size
