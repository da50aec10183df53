"""Average attention maps (supplement Figs. 2-4): patch-to-patch probabilities over heads and images."""
from typing import Sequence

import torch


def average_attention_map(attn: torch.Tensor, num_extra_tokens: int = 1) -> torch.Tensor:
    """Patch-to-patch attention averaged over the batch and the heads.

    Args:
        attn: Attention probabilities (B, heads, T, T), extra tokens (CLS) first.
        num_extra_tokens: Leading non-patch tokens to drop from rows and columns.

    Returns:
        An (N, N) float32 tensor, rows = queries and columns = keys, patches indexed top-left to
        bottom-right (row-major). The probabilities are not renormalised after dropping the class token.
    """
    if attn.ndim != 4:
        raise ValueError(f'expected attention of shape (B, heads, T, T), got {tuple(attn.shape)}')
    return attn[..., num_extra_tokens:, num_extra_tokens:].float().mean(dim=(0, 1))


def layer_attention_maps(attn_maps: Sequence[torch.Tensor], num_extra_tokens: int = 1) -> torch.Tensor:
    """:func:`average_attention_map` of every layer: a (layers, N, N) tensor."""
    return torch.stack([average_attention_map(attn, num_extra_tokens) for attn in attn_maps])
