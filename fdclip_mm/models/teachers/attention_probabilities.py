"""Attention probabilities of mmpretrain's ``MultiheadAttention``, recomputed from its input.

mmpretrain's attention returns only its output (the probabilities never exist outside the fused kernel).
The analysis tools need them, so they are recomputed from the module's input and its ``qkv`` weights,
exactly as the module forms them: ``softmax(q k^T / sqrt(head_dims))``.
"""
from typing import List

import torch
from torch import nn


def attention_probabilities(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, N) float32 probabilities of ``attn`` (an mmpretrain ``MultiheadAttention``) on ``x`` (B, N, C).

    Raises:
        TypeError: ``attn`` has no packed ``qkv`` projection with ``num_heads`` / ``head_dims``.
    """
    if not all(hasattr(attn, name) for name in ('qkv', 'num_heads', 'head_dims')):
        raise TypeError(f'{type(attn).__name__} is not an attention module with a packed qkv projection')
    batch, tokens, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dims).permute(2, 0, 3, 1, 4)
    q, k = qkv[0].float(), qkv[1].float()
    return ((q * attn.head_dims**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)


def layer_attention_maps(backbone: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Per-layer probabilities of a ViT backbone whose ``layers[i].attn`` are ``MultiheadAttention``.

    The backbone runs once; a forward pre-hook on each attention module keeps its input (the block's normed
    tokens), from which :func:`attention_probabilities` recomputes the probabilities.
    """
    layers = getattr(backbone, 'layers', None)
    if layers is None or not all(hasattr(layer, 'attn') for layer in layers):
        raise TypeError(f'{type(backbone).__name__} has no layers[i].attn: attention maps need a ViT teacher')
    inputs: List[torch.Tensor] = []
    handles = [layer.attn.register_forward_pre_hook(lambda module, args: inputs.append(args[0])) for layer in layers]
    try:
        backbone(x)
    finally:
        for handle in handles:
            handle.remove()
    return [attention_probabilities(layer.attn, tokens) for layer, tokens in zip(layers, inputs)]
