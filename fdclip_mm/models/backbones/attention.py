"""mmpretrain's BEiT attention with SDPA, FlexAttention and explicit paths, and an RPB table for any grid."""
from functools import lru_cache
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import BEiTAttention

from .rel_pos_bias import Grid, RelativePositionBias

ATTN_BACKENDS = ('auto', 'sdpa', 'explicit', 'flex')


@lru_cache(maxsize=None)
def compiled_flex_attention() -> Callable:
    """``flex_attention`` compiled once per process (uncompiled, it materialises the scores and warns); inside a
    compiled block it is inlined into the block's graph."""
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def bias_score_mod(bias: torch.Tensor) -> Callable:
    """A FlexAttention ``score_mod`` adding ``bias`` (1 or B, heads, N, N) to the scaled logits (gradients reach
    it)."""
    if bias.shape[0] == 1:
        return lambda score, b, h, q, kv: score + bias[0, h, q, kv]
    return lambda score, b, h, q, kv: score + bias[b, h, q, kv]


def flex_pays(q: torch.Tensor, bias: Optional[torch.Tensor], drop: float) -> bool:
    """Whether ``auto`` runs FlexAttention: biased attention on CUDA, where SDPA never takes its FlashAttention
    kernel with a float mask and FlexAttention fuses the bias into a flash-style kernel. Not with attention
    dropout (FlexAttention has none), not on CPU (no backward in torch 2.14, slower than SDPA for inference)."""
    return q.is_cuda and bias is not None and drop == 0.


def sdpa_pays(q: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """Whether ``scaled_dot_product_attention`` beats explicit products: everywhere but in a biased training step
    on CPU, where SDPA's math fallback upcasts bf16 q, k, v to float32 (~8x slower products on an AVX512-BF16
    CPU) and was 5-10% slower in float32 too (``benchmarks/README.md``)."""
    return not (q.device.type == 'cpu' and bias is not None and torch.is_grad_enabled() and q.requires_grad)


class Attention(BEiTAttention):
    """mmpretrain's ``BEiTAttention`` (q/v biases, no k bias) run by one of three equivalent paths, with an optional
    RPB table of its own (``rel_pos_bias``) for any patch grid and subset of tokens.

    The bias (of the attended tokens) enters SDPA as an additive float mask, FlexAttention as a ``score_mod``, and
    the explicit products as in ``BEiTAttention``, the one path that returns the attention probabilities.

    Args:
        embed_dims: Token width.
        num_heads: Attention heads.
        qv_bias: Learnable biases for q and v, none for k (BEiT). Defaults to True.
        attn_drop: Dropout on the attention probabilities during training.
        proj_drop: Dropout after the output projection.
        backend: ``'auto'`` (the faster path for the device and mode, see :func:`flex_pays` and
            :func:`sdpa_pays`), ``'sdpa'``, ``'explicit'`` or ``'flex'`` (FlexAttention, the bias as a
            ``score_mod``; no attention dropout).
        rel_pos_grid: Patch grid of this attention's own RPB table; None for none.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 backend: str = 'auto',
                 rel_pos_grid: Optional[Grid] = None) -> None:
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        if backend not in ATTN_BACKENDS:
            raise ValueError(f'attention backend must be one of {ATTN_BACKENDS}, got {backend!r}')
        super().__init__(
            embed_dims,
            num_heads,
            window_size=None,
            use_rel_pos_bias=False,
            bias='qv_bias' if qv_bias else False,
            attn_drop_rate=attn_drop,
            proj_drop_rate=proj_drop)
        self.backend = backend
        self.rel_pos_bias = RelativePositionBias(rel_pos_grid, num_heads) if rel_pos_grid else None

    def _qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bias = self.qkv.bias
        if self.bias == 'qv_bias':
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).unflatten(-1, (3, self.num_heads, -1))
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self,
                x: torch.Tensor,
                bias: Optional[torch.Tensor] = None,
                grid: Optional[Grid] = None,
                token_ids: Optional[torch.Tensor] = None,
                return_attn: bool = False):
        """Attends ``x`` (B, N, C) with an additive ``bias`` broadcastable to (B, heads, N, N), or with the bias of
        this attention's own table for the patch ``grid`` and the (B, N) ``token_ids`` kept of it.

        Returns:
            The output (B, N, C), and with ``return_attn`` also the probabilities (B, heads, N, N).
        """
        if self.rel_pos_bias is not None:
            bias = self.rel_pos_bias(grid, token_ids)
        q, k, v = self._qkv(x)
        drop = self.attn_drop.p if self.training else 0.
        backend = self.backend
        if backend == 'auto':
            backend = 'flex' if flex_pays(q, bias, drop) else 'sdpa' if sdpa_pays(q, bias) else 'explicit'
        if return_attn or backend == 'explicit':
            logits = (q * self.scale) @ k.transpose(-2, -1)
            attn = (logits if bias is None else logits + bias).softmax(dim=-1)
            out = self.attn_drop(attn).to(v.dtype) @ v
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
