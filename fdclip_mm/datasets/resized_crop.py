"""Crop and resize in one antialiased resampling, the same code for a loader worker's CPU and a GPU."""
from typing import Tuple

import torch
import torch.nn.functional as F

#: Resampling filters of mmpretrain's ``RandomResizedCrop(backend='pillow')`` that torch computes the way Pillow
#: does (a filter support widened by the reduction factor when shrinking): torchvision's v2 ``Resize`` relies on
#: the same ``interpolate(antialias=True)`` to match Pillow.
INTERPOLATIONS = ('bilinear', 'bicubic')


def check_interpolation(interpolation: str) -> str:
    """``interpolation`` if it is one of :data:`INTERPOLATIONS`, else a ValueError naming the choices."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f'interpolation must be one of {INTERPOLATIONS} (the filters resampled as Pillow does); '
                         f'got {interpolation!r}: use mmpretrain\'s RandomResizedCrop for others')
    return interpolation


def resized_crop(images: torch.Tensor, box: Tuple[int, int, int, int], size: Tuple[int, int],
                 interpolation: str) -> torch.Tensor:
    """The ``box`` of ``images`` resized to ``size`` with an antialiased filter.

    Args:
        images: (N, C, H, W), uint8 (CPU only; fastest in channels-last memory, e.g. a permuted HWC array)
            or floating point.
        box: (top, left, height, width) in pixels.
        size: Output (height, width).
        interpolation: One of :data:`INTERPOLATIONS`.

    Returns:
        torch.Tensor: (N, C, *size), the input's dtype; floating-point results are clipped to [0, 255] as
        Pillow clips bicubic overshoot.
    """
    top, left, height, width = box
    crop = images[:, :, top:top + height, left:left + width]
    out = F.interpolate(crop, size=tuple(size), mode=interpolation, antialias=True, align_corners=False)
    return out.clamp_(0, 255) if out.is_floating_point() else out
