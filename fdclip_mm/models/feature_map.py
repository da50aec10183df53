"""What a backbone gives the distiller: a patch feature map and, for ViTs, a class token.

Both sides of feature distillation are described the same way, whatever the backbone: mmpretrain's
``VisionTransformer`` (``out_type='raw'``: class token + patch tokens) and our ``FDViT`` give tokens on a patch
grid; ``SwinTransformer`` (V1/V2), ``ConvNeXt`` and ``ResNet`` give (B, C, h, w) maps. :func:`output_layout`
reads how a backbone's output is laid out, :func:`backbone_features` turns any of those outputs into a
:class:`FeatureMap`; :func:`resample_patches` aligns two grids;
:func:`feature_tokens` flattens a map (raster order, class token first) for the token-wise loss.
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class FeatureMap(NamedTuple):
    """``patches`` (B, C, h, w); ``cls_token`` (B, C) or None for backbones without one."""

    patches: torch.Tensor
    cls_token: Optional[torch.Tensor] = None

    @property
    def grid(self) -> Tuple[int, int]:
        return tuple(self.patches.shape[-2:])


def tokens_to_feature_map(tokens: torch.Tensor, grid: Sequence[int], num_extra_tokens: int) -> FeatureMap:
    """(B, extra + h*w, C) tokens -> :class:`FeatureMap`; the first extra token is the class token.

    Raises:
        ValueError: The token count is not ``num_extra_tokens + h * w``.
    """
    h, w = grid
    if tokens.shape[1] != num_extra_tokens + h * w:
        raise ValueError(f'{tokens.shape[1]} tokens do not make {num_extra_tokens} extra tokens and a {h}x{w} '
                         'patch grid')
    patches = tokens[:, num_extra_tokens:].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
    return FeatureMap(patches, tokens[:, 0] if num_extra_tokens else None)


class OutputLayout(NamedTuple):
    """How a backbone's one output is read: its channels and, for a ViT's tokens, the patch stride and the tokens
    before the patches (:func:`output_layout`)."""

    channels: int
    #: (h, w) stride of the patch grid of a ViT; None for backbones whose (B, C, h, w) maps carry their grid.
    patch_stride: Optional[Tuple[int, int]]
    #: Tokens before the patches (the class token), 0 without one.
    num_extra_tokens: int

    def grid(self, input_size: Sequence[int]) -> Tuple[int, int]:
        """The patch grid a ViT makes of ``input_size`` images."""
        if self.patch_stride is None:
            raise ValueError('a backbone without a patch stride has no token grid: its output maps carry their own')
        return math.ceil(input_size[0] / self.patch_stride[0]), math.ceil(input_size[1] / self.patch_stride[1])


def output_layout(backbone: nn.Module) -> OutputLayout:
    """The :class:`OutputLayout` of a backbone's one output, read off its attributes (the one place that does).

    Channels: ``VisionTransformer`` / ``FDViT``: ``embed_dims``; ``SwinTransformer``: ``num_features``;
    ``SwinTransformerV2``: the stage's ``out_channels`` (it merges patches at the start of a stage); ``ConvNeXt``:
    ``channels``; ``ResNet``: the last block's ``out_channels`` of that stage (the stage of the last of
    ``out_indices``). Patch stride: a ViT's (blocks in ``layers`` after an mmcv ``PatchEmbed``) patch embedding
    stride, or its ``patch_size``. Extra tokens: ``num_extra_tokens`` when it has a ``cls_token``.

    Raises:
        TypeError: A backbone of none of these kinds.
    """
    projection = getattr(getattr(backbone, 'patch_embed', None), 'projection', None)
    stride = None
    if hasattr(backbone, 'layers') and projection is not None:
        stride = tuple(projection.stride)
    elif isinstance(getattr(backbone, 'patch_size', None), int):
        stride = (backbone.patch_size, ) * 2
    has_cls = getattr(backbone, 'cls_token', None) is not None
    return OutputLayout(_channels(backbone), stride, getattr(backbone, 'num_extra_tokens', 1) if has_cls else 0)


def _channels(backbone: nn.Module) -> int:
    indices = getattr(backbone, 'out_indices', [-1])
    index = list(indices)[-1] if isinstance(indices, Sequence) else int(indices)
    if isinstance(getattr(backbone, 'num_features', None), Sequence):
        return int(backbone.num_features[index])
    stages = getattr(backbone, 'stages', None)
    if stages is not None and hasattr(stages[index], 'out_channels'):
        return int(stages[index].out_channels)
    if isinstance(getattr(backbone, 'channels', None), Sequence):
        return int(backbone.channels[index])
    if hasattr(backbone, 'res_layers'):
        return int(getattr(backbone, backbone.res_layers[index])[-1].out_channels)
    if isinstance(getattr(backbone, 'embed_dims', None), int):
        return backbone.embed_dims
    raise TypeError(f'cannot tell the output channels of {type(backbone).__name__}; FD takes FDViT, '
                    "mmpretrain's VisionTransformer, SwinTransformer(V2), ConvNeXt and ResNet")


def backbone_features(backbone: nn.Module, outputs, input_size: Sequence[int]) -> FeatureMap:
    """The :class:`FeatureMap` of a backbone's output (its tuple of one stage, or a tensor).

    Args:
        backbone: The backbone that produced ``outputs`` (for its :func:`output_layout`).
        outputs: A (B, C, h, w) map, or (B, T, C) tokens of a ViT with ``out_type='raw'``, or a 1-tuple of one.
        input_size: (H, W) of the images given to the backbone.

    Raises:
        ValueError: Several outputs (the distiller takes one stage) or an output without spatial layout.
    """
    if isinstance(outputs, (tuple, list)):
        if len(outputs) != 1:
            raise ValueError(f'{type(backbone).__name__} returned {len(outputs)} outputs; the distiller takes '
                             'one stage: set out_indices to a single index (e.g. (3, ) or -1)')
        outputs = outputs[0]
    if outputs.ndim == 4:
        return FeatureMap(outputs)
    if outputs.ndim == 3:
        layout = output_layout(backbone)
        return tokens_to_feature_map(outputs, layout.grid(input_size), layout.num_extra_tokens)
    raise ValueError(f'{type(backbone).__name__} returned a {tuple(outputs.shape)} tensor without a patch '
                     "grid; a ViT must use out_type='raw' (or 'featmap'), a CNN / Swin its stage maps")


def resample_patches(patches: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Resamples a (B, C, h, w) map to ``grid``: area averages to shrink, bilinear to enlarge, as is otherwise.

    Used on the teacher's side, to bring its patch map to the student's grid (see
    :class:`~fdclip_mm.models.algorithms.FeatureDistiller`). Shrinking averages the teacher tokens that cover
    each student cell (adaptive average pooling: an integer factor gives plain block means), which is the
    target a coarser map can match best in the mean-squared sense and aliases nothing. Enlarging (teacher
    coarser than student) interpolates bilinearly (``align_corners=False``). Each axis is treated alike; a
    grid that shrinks on one axis and grows on the other is first averaged, then interpolated.
    """
    grid = tuple(int(g) for g in grid)
    if tuple(patches.shape[-2:]) == grid:
        return patches
    shrunk = (min(patches.shape[-2], grid[0]), min(patches.shape[-1], grid[1]))
    if shrunk != tuple(patches.shape[-2:]):
        patches = F.adaptive_avg_pool2d(patches, shrunk)
    if shrunk != grid:
        patches = F.interpolate(patches, size=grid, mode='bilinear', align_corners=False)
    return patches


def feature_tokens(features: FeatureMap, with_cls: bool) -> torch.Tensor:
    """(B, [1 +] h*w, C): the class token first when ``with_cls``, then the patches in raster order."""
    tokens = features.patches.flatten(2).transpose(1, 2)
    if not with_cls:
        return tokens
    if features.cls_token is None:
        raise ValueError('this feature map has no class token')
    return torch.cat([features.cls_token[:, None], tokens], dim=1)
