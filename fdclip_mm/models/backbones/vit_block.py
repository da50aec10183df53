"""One pre-norm transformer block with layer scale and stochastic depth (BEiT layout)."""
from typing import Optional

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from torch import nn

from .attention import Attention
from .drop_path import DropPath
from .rel_pos_bias import Grid, RelativePositionBias, select_token_bias


class ViTBlock(nn.Module):
    """``x + drop_path(gamma_1 * attn(ln1(x)))`` then ``x + drop_path(gamma_2 * ffn(ln2(x)))``.

    Parameter names follow mmpretrain's ``BEiTTransformerEncoderLayer``. Unlike it, drop path is applied
    once per branch: mmpretrain also passes a DropPath to the FFN, so its FFN branch is dropped twice.

    Args:
        embed_dims: Token width.
        num_heads: Attention heads.
        feedforward_channels: FFN hidden width.
        layer_scale_init_value: Initial layer scale; 0 disables layer scale.
        drop_path_rate: Stochastic depth probability of this block.
        rel_pos_grid: Patch grid of a per-layer RPB table; None when the block has none.
        qv_bias: q and v biases in the attention.
        drop_rate: Dropout after the attention projection and the FFN.
        attn_drop_rate: Dropout on attention probabilities.
        norm_cfg: Norm layer config.
        act_cfg: FFN activation config.
        attn_backend: Attention implementation (see :class:`Attention`).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 layer_scale_init_value: float = 0.1,
                 drop_path_rate: float = 0.,
                 rel_pos_grid: Optional[Grid] = None,
                 qv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 attn_backend: str = 'auto') -> None:
        super().__init__()
        self.ln1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = Attention(
            embed_dims, num_heads, qv_bias=qv_bias, attn_drop=attn_drop_rate, proj_drop=drop_rate, backend=attn_backend)
        self.attn.rel_pos_bias = RelativePositionBias(rel_pos_grid, num_heads) if rel_pos_grid else None
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=2,
            ffn_drop=drop_rate,
            act_cfg=act_cfg,
            add_identity=False)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        if layer_scale_init_value > 0:
            self.gamma_1 = nn.Parameter(torch.full((embed_dims, ), float(layer_scale_init_value)))
            self.gamma_2 = nn.Parameter(torch.full((embed_dims, ), float(layer_scale_init_value)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self,
                x: torch.Tensor,
                bias: Optional[torch.Tensor] = None,
                grid: Optional[Grid] = None,
                return_attn: bool = False,
                token_ids: Optional[torch.Tensor] = None):
        """``bias`` is a shared RPB (already restricted to the kept tokens); ``grid`` the patch grid for this
        block's own RPB (if it has one); ``token_ids`` (B, K) the kept tokens when the input is masked."""
        if self.attn.rel_pos_bias is not None:
            bias = self.attn.rel_pos_bias(grid)
            if token_ids is not None:
                bias = select_token_bias(bias, token_ids)
        attn = None
        y = self.attn(self.ln1(x), bias, return_attn=return_attn)
        if return_attn:
            y, attn = y
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.ffn(self.ln2(x))
        x = x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
        return (x, attn) if return_attn else x
