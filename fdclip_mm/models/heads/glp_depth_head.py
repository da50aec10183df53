"""The light depth decoder of "Revealing the Dark Secrets of MIM" (Xie et al. 2022) as an mmseg head."""
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.utils import SampleList
from torch import nn

from fdclip_mm.registry import MODELS
from ..builder import build_model


@MODELS.register_module()
class GLPDepthHead(BaseDecodeHead):
    """GLPDepth-style decoder: deconvolutions on one feature map, then a depth map at the input resolution.

    Follows the decoder of the MIM depth code (SwinTransformer/MIM-Depth-Estimation, ``models/model.py``,
    built on GLPDepth): ``num_deconv`` transposed convolutions (kernel 2, stride 2, no bias) of ``num_filters``
    channels, each with BN + ReLU; a 3x3 conv to ``channels`` + BN + ReLU; bilinear upsampling to the input
    resolution; 3x3 conv + ReLU + 3x3 conv to one channel; ``sigmoid * max_depth``. Every convolution starts
    from N(0, 0.001) as there. The selected map has stride ``feature_stride`` (16 for the last block of a
    ViT-B/16; Swin's last stage has 32), so the prediction covers exactly the input.

    Works with mmseg's ``DepthEstimator``: ``loss`` compares the prediction with ``gt_depth_map`` through
    ``loss_decode`` (mmseg's ``SiLogLoss``, lambda 0.5, pixels with depth <= eps ignored); ``predict`` returns
    (B, 1, H, W) depths.

    Args:
        in_channels: Channels of the input map, or of every map the backbone / neck gives (then ``in_index``
            selects one).
        feature_stride: Stride of the selected map relative to the input image.
        channels: Channels of the conv after the deconvolutions and of the prediction convs (the original
            uses the Swin stem width, 1/8 of its last stage).
        in_index: Index of the map the head reads.
        max_depth: Largest depth the head can predict (metres).
        num_deconv: Number of deconvolutions (each doubles the resolution).
        num_filters: Output channels of each deconvolution.
        norm_cfg: Norm after the deconvolutions and the conv.
        align_corners: ``align_corners`` of the final resizes.
        loss_decode: mmseg loss config(s) comparing the prediction and ``gt_depth_map``.
        init_cfg: mmengine init config.
    """
    num_classes = 1
    out_channels = 1
    input_transform = None

    def __init__(
        self,
        in_channels: Union[int, Sequence[int]],
        feature_stride: int,
        channels: int = 96,
        in_index: int = -1,
        max_depth: float = 10.0,
        num_deconv: int = 3,
        num_filters: Sequence[int] = (32, 32, 32),
        norm_cfg: dict = dict(type='BN'),
        align_corners: bool = False,
        loss_decode: Union[dict, Sequence[dict]] = dict(type='SiLogLoss'),
        init_cfg=dict(type='Normal', std=0.001, bias=0., layer=['Conv2d', 'ConvTranspose2d'])
    ) -> None:
        # BaseDecodeHead.__init__ would add a 1x1 classifier (``conv_seg``) this head never uses; only its
        # loss / predict plumbing is inherited, so its base (BaseModule) is initialised directly.
        super(BaseDecodeHead, self).__init__(init_cfg=init_cfg)
        if isinstance(in_channels, int):
            in_channels, in_index = [in_channels], 0
        self.in_channels = list(in_channels)
        if not -len(self.in_channels) <= in_index < len(self.in_channels):
            raise ValueError(f'in_index {in_index} is out of range for in_channels {self.in_channels}')
        self.in_index = in_index
        if len(num_filters) != num_deconv:
            raise ValueError(f'num_filters {tuple(num_filters)} must give one width per deconvolution '
                             f'(num_deconv={num_deconv})')
        if feature_stride < 2**num_deconv:
            raise ValueError(f'feature_stride {feature_stride} is finer than the {2**num_deconv}x upsampling '
                             f'of {num_deconv} deconvolutions')
        self.feature_stride = feature_stride
        self.channels = channels
        self.max_depth = max_depth
        self.align_corners = align_corners

        deconvs, width = [], self.in_channels[in_index]
        for filters in num_filters:
            deconvs += [
                nn.ConvTranspose2d(width, filters, kernel_size=2, stride=2, bias=False),
                build_norm_layer(norm_cfg, filters)[1],
                nn.ReLU(inplace=True)
            ]
            width = filters
        self.deconv_layers = nn.Sequential(*deconvs)
        self.conv_layers = nn.Sequential(
            nn.Conv2d(width, channels, kernel_size=3, padding=1),
            build_norm_layer(norm_cfg, channels)[1], nn.ReLU(inplace=True))
        self.depth_pred = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU(inplace=False),
            nn.Conv2d(channels, 1, kernel_size=3, padding=1))

        losses = [loss_decode] if isinstance(loss_decode, dict) else list(loss_decode)
        if not losses or not all(isinstance(cfg, dict) for cfg in losses):
            raise TypeError(f'loss_decode must be a dict or a sequence of dicts, got {loss_decode!r}')
        built = [build_model(cfg, scope='mmseg') for cfg in losses]  # whatever the caller's scope
        self.loss_decode = built[0] if isinstance(loss_decode, dict) else nn.ModuleList(built)

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        """Depth (B, 1, h * stride, w * stride) in (0, max_depth) from the selected map (B, C, h, w)."""
        x = inputs if isinstance(inputs, torch.Tensor) else self._transform_inputs(list(inputs))
        expected = self.in_channels[self.in_index]
        if x.dim() != 4 or x.shape[1] != expected:
            raise ValueError(f'GLPDepthHead expects a (B, {expected}, h, w) map at in_index {self.in_index}, '
                             f'got {tuple(x.shape)}')
        size = (x.shape[2] * self.feature_stride, x.shape[3] * self.feature_stride)
        x = self.conv_layers(self.deconv_layers(x))
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=self.align_corners)
        return torch.sigmoid(self.depth_pred(x)) * self.max_depth

    def loss_by_feat(self, pred_depth: torch.Tensor, batch_data_samples: SampleList) -> dict:
        """Losses between the prediction (resized to the ground truth) and ``gt_depth_map``."""
        gt = torch.stack([s.gt_depth_map.data for s in batch_data_samples]).to(pred_depth)
        pred_depth = F.interpolate(pred_depth, size=gt.shape[2:], mode='bilinear', align_corners=self.align_corners)
        losses = self.loss_decode if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]
        out = {}
        for loss in losses:
            out[loss.loss_name] = out.get(loss.loss_name, 0) + loss(pred_depth, gt)
        return out

    def _transform_inputs(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'GLPDepthHead got {len(inputs)} feature maps but in_channels lists '
                             f'{len(self.in_channels)}')
        return inputs[self.in_index]

    def extra_repr(self) -> str:
        return f'in_index={self.in_index}, feature_stride={self.feature_stride}, max_depth={self.max_depth}'


__all__ = ['GLPDepthHead']
