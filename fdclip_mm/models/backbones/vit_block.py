"""mmpretrain's BEiT block with FD's attention and a drop path once per residual branch."""
from typing import Optional

import torch
from mmengine.model import BaseModule
from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer
from torch import nn

from .attention import Attention
from .drop_path import DropPath
from .rel_pos_bias import Grid


class ViTBlock(BEiTTransformerEncoderLayer):
    """``x + drop_path(gamma_1 * attn(ln1(x)))`` then ``x + drop_path(gamma_2 * ffn(ln2(x)))``.

    mmpretrain's ``BEiTTransformerEncoderLayer`` (its norms, FFN and layer scales) with FD's
    :class:`~fdclip_mm.models.backbones.attention.Attention` and :class:`DropPath`. Where it differs: the FFN
    branch is dropped once, as the attention branch (mmpretrain also gives the FFN a drop path of its own, so
    its FFN branch is dropped twice); a per-layer RPB table lives in ``attn.rel_pos_bias``; ``forward`` takes the
    patch grid, the kept tokens of masked input and ``return_attn``.

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
        # mmpretrain's layer builds an attention and an FFN that it replaces, then an attention that ours replaces:
        # their default initialisation is drawn from a forked generator, the kept modules' again below, so that a
        # seed gives the weights of a block built from its parts (and FDViT's those of the official code).
        with torch.random.fork_rng(devices=()):
            super().__init__(
                embed_dims,
                num_heads,
                feedforward_channels,
                layer_scale_init_value,
                window_size=None,
                use_rel_pos_bias=False,
                drop_rate=drop_rate,
                act_cfg=act_cfg,
                norm_cfg=norm_cfg,
                ffn_cfg=dict(add_identity=False, dropout_layer=None))
        self.attn = Attention(embed_dims, num_heads, qv_bias, attn_drop_rate, drop_rate, attn_backend, rel_pos_grid)
        for fc in (self.ffn.layers[0][0], self.ffn.layers[1]):
            fc.reset_parameters()
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def init_weights(self) -> None:
        """Draws nothing: FDViT initialises its blocks as the official code when it builds them (mmpretrain's
        layer would redraw the FFN weights from a Xavier uniform here)."""
        BaseModule.init_weights(self)

    def forward(self,
                x: torch.Tensor,
                bias: Optional[torch.Tensor] = None,
                grid: Optional[Grid] = None,
                return_attn: bool = False,
                token_ids: Optional[torch.Tensor] = None):
        """``bias`` is a shared RPB (already restricted to the kept tokens); ``grid`` the patch grid for this
        block's own RPB (if it has one); ``token_ids`` (B, K) the kept tokens when the input is masked."""
        y = self.attn(self.ln1(x), bias, grid, token_ids, return_attn=return_attn)
        y, attn = y if return_attn else (y, None)
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.ffn(self.ln2(x))
        x = x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
        return (x, attn) if return_attn else x
