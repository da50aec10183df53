"""Single-scale ViT feature maps -> a feature pyramid (strides /4, /8, /16, /32 of a patch-16 ViT)."""
from typing import List, Sequence, Tuple

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from fdclip_mm.registry import MODELS


def _rescale_branch(channels: int, scale: float, norm_cfg: dict) -> nn.Module:
    """Resampling of one pyramid level: 2x2 transposed convolutions up, 2x2 max pooling down."""
    if scale == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
            build_norm_layer(norm_cfg, channels)[1], nn.GELU(),
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    if scale == 2:
        return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
    if scale == 1:
        return nn.Identity()
    if scale == 0.5:
        return nn.MaxPool2d(kernel_size=2, stride=2)
    raise ValueError(f'rescales may hold 4, 2, 1 and 0.5 only, got {scale}')


@MODELS.register_module()
class ViTPyramidNeck(BaseModule):
    """Turns ViT feature maps of one stride into a pyramid, as BEiT's dense-task recipe does.

    Each input (the output of one ViT block, e.g. blocks 4, 6, 8 and 12) is resampled by its own factor;
    the channel count stays ``embed_dims``, so the task's FPN or UperNet head takes
    ``in_channels=[embed_dims] * len(rescales)``. A single input is shared by all levels (ViTDet's
    "simple feature pyramid" from the last block only).

    mmseg's ``Feature2Pyramid`` is the same operation but lives in mmseg; this one serves mmdet too.

    Args:
        embed_dims: Channels of the ViT feature maps.
        rescales: Resampling factor of each level.
        norm_cfg: Norm between the two transposed convolutions of the x4 level (SyncBN; mmengine reverts it
            to BN in non-distributed runs).
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 embed_dims: int,
                 rescales: Sequence[float] = (4, 2, 1, 0.5),
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.rescales = tuple(rescales)
        self.branches = nn.ModuleList([_rescale_branch(embed_dims, s, norm_cfg) for s in self.rescales])

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """``inputs``: one (B, C, H, W) map per level, or a single one for all; returns the pyramid."""
        inputs: List[torch.Tensor] = list(inputs)
        if len(inputs) == 1:
            inputs = inputs * len(self.rescales)
        if len(inputs) != len(self.rescales):
            raise ValueError(f'ViTPyramidNeck got {len(inputs)} feature maps for {len(self.rescales)} levels '
                             f'(rescales={self.rescales}); set the backbone out_indices to match')
        for x in inputs:
            if x.dim() != 4 or x.shape[1] != self.embed_dims:
                raise ValueError(f'ViTPyramidNeck expects (B, {self.embed_dims}, H, W) maps, got '
                                 f'{tuple(x.shape)}; is the backbone out_type "featmap"?')
        return tuple(branch(x) for branch, x in zip(self.branches, inputs))
