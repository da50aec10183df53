"""Multi-head self-attention with q/v biases and an optional additive position bias."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Self-attention whose fast path is ``scaled_dot_product_attention``.

    The relative position bias enters SDPA as an additive float mask. ``forward(..., return_attn=True)``
    takes the explicit path and also returns the per-head attention probabilities (for analysis).

    Args:
        embed_dims: Token width.
        num_heads: Attention heads.
        qv_bias: Learnable biases for q and v, none for k (BEiT). Defaults to True.
        attn_drop: Dropout on the attention probabilities during training.
        proj_drop: Dropout after the output projection.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=False)
        if qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        B, N, _ = x.shape
        qkv = F.linear(x, self.qkv.weight, bias).view(B, N, 3, self.num_heads, self.head_dims)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self,
                x: torch.Tensor,
                bias: Optional[torch.Tensor] = None,
                return_attn: bool = False):
        """Attends ``x`` (B, N, C) with an optional additive ``bias`` broadcastable to (B, heads, N, N).

        Returns:
            The output (B, N, C), and with ``return_attn`` also the probabilities (B, heads, N, N).
        """
        q, k, v = self._qkv(x)
        drop = self.attn_drop if self.training else 0.
        attn = None
        if return_attn:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                logits = logits + bias
            attn = logits.softmax(dim=-1)
            out = F.dropout(attn, drop, self.training) @ v
        else:
            if bias is not None:
                bias = bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        out = self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))
        return (out, attn) if return_attn else out
