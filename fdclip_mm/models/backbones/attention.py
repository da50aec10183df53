"""Multi-head self-attention with q/v biases and an optional additive position bias."""
from functools import lru_cache
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ATTN_BACKENDS = ('auto', 'sdpa', 'explicit', 'flex')


@lru_cache(maxsize=None)
def compiled_flex_attention() -> Callable:
    """``torch.compile``'d ``flex_attention`` (uncompiled, it materialises the scores and warns); compiled once
    per process, on first use. Inside a compiled block it is inlined into the block's graph."""
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def bias_score_mod(bias: torch.Tensor) -> Callable:
    """A FlexAttention ``score_mod`` adding ``bias`` (1 or B, heads, N, N) to the scaled logits; gradients flow
    into ``bias`` (and through it into the RPB table it was gathered from)."""
    if bias.shape[0] == 1:
        return lambda score, b, h, q, kv: score + bias[0, h, q, kv]
    return lambda score, b, h, q, kv: score + bias[b, h, q, kv]


def flex_pays(q: torch.Tensor, bias: Optional[torch.Tensor], drop: float) -> bool:
    """Whether ``auto`` runs FlexAttention: biased attention on CUDA, where SDPA never picks its FlashAttention
    kernel for a float mask (it runs the memory-efficient or math kernel), and FlexAttention fuses the bias
    into a flash-style kernel. Not with attention dropout (FlexAttention has none), not on CPU (no backward
    in torch 2.14, and slower than SDPA for inference: ``benchmarks/README.md``)."""
    return q.is_cuda and bias is not None and drop == 0.


def sdpa_pays(q: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """Whether ``scaled_dot_product_attention`` beats explicit matrix products for these inputs.

    On CPU, SDPA with a float mask and gradients runs its math fallback, which upcasts bf16/fp16 q, k, v
    to float32 (float32 batched products are ~8x slower than bf16 ones on an AVX512-BF16 CPU); in float32
    it was 5-10% slower than explicit products too (``benchmarks/README.md``). Everywhere else (no bias,
    inference, CUDA) SDPA's fused kernels are used.
    """
    return not (q.device.type == 'cpu' and bias is not None and torch.is_grad_enabled() and q.requires_grad)


class Attention(nn.Module):
    """Self-attention with two equivalent paths: ``scaled_dot_product_attention`` and explicit products.

    The relative position bias enters SDPA as an additive float mask, FlexAttention as a ``score_mod``
    reading the bias tensor (class-token rows and columns and masked input's kept tokens included, since
    the bias given is already the one of the attended tokens). The explicit path adds it to the
    logits (promoting them to the bias's float32 under autocast, as mmpretrain's BEiT does) and can return
    the per-head attention probabilities (``forward(..., return_attn=True)``, for analysis).

    Args:
        embed_dims: Token width.
        num_heads: Attention heads.
        qv_bias: Learnable biases for q and v, none for k (BEiT). Defaults to True.
        attn_drop: Dropout on the attention probabilities during training.
        proj_drop: Dropout after the output projection.
        backend: ``'auto'`` (the faster path for the device and mode, see :func:`flex_pays` and
            :func:`sdpa_pays`), ``'sdpa'``, ``'explicit'`` or ``'flex'`` (FlexAttention, the bias as a
            ``score_mod``; no attention dropout).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 backend: str = 'auto') -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        if backend not in ATTN_BACKENDS:
            raise ValueError(f'attention backend must be one of {ATTN_BACKENDS}, got {backend!r}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.backend = backend
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

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
                  drop: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Output (B, heads, N, head_dims) and probabilities (B, heads, N, N) from explicit products."""
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        attn = logits.softmax(dim=-1)
        return F.dropout(attn, drop, self.training).to(v.dtype) @ v, attn

    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None, return_attn: bool = False):
        """Attends ``x`` (B, N, C) with an optional additive ``bias`` broadcastable to (B, heads, N, N).

        Returns:
            The output (B, N, C), and with ``return_attn`` also the probabilities (B, heads, N, N).
        """
        q, k, v = self._qkv(x)
        drop = self.attn_drop if self.training else 0.
        attn = None
        backend = self.backend
        if backend == 'auto':
            backend = 'flex' if flex_pays(q, bias, drop) else 'sdpa' if sdpa_pays(q, bias) else 'explicit'
        if return_attn or backend == 'explicit':
            out, attn = self._explicit(q, k, v, bias, drop)
        elif backend == 'flex':
            if drop:
                raise ValueError(f"attention backend 'flex' has no attention dropout (attn_drop={drop})")
            score_mod = None if bias is None else bias_score_mod(bias)
            out = compiled_flex_attention()(q, k, v, score_mod=score_mod)
        else:
            mask = None if bias is None else bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        out = self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))
        return (out, attn) if return_attn else out
