"""CLIP's image tower (OpenAI layout) as a frozen distillation teacher."""
import math
from collections import OrderedDict
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import resize_pos_embed
from torch import nn

from fdclip_mm.registry import MODELS
from .base_teacher import BaseTeacher
from .clip_checkpoint import block_indices, load_clip_visual_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImgSize = Union[int, Sequence[int]]


class QuickGELU(nn.Module):
    """The GELU approximation OpenAI's CLIP was trained with: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class CLIPAttention(nn.Module):
    """Self-attention with a packed q/k/v projection, named like ``nn.MultiheadAttention``'s parameters.

    Args:
        embed_dims: Token width.
        num_heads: Attention heads.
    """

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims))
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        """Attends ``x`` (B, N, C) to itself; ``return_attn`` takes the explicit path and also returns the
        probabilities (B, heads, N, N)."""
        B, N, C = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if not return_attn:
            out = F.scaled_dot_product_attention(q, k, v)
            return self.out_proj(out.transpose(1, 2).reshape(B, N, C))
        attn = ((q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.out_proj((attn @ v).transpose(1, 2).reshape(B, N, C)), attn


class CLIPResidualBlock(nn.Module):
    """Pre-norm transformer block of CLIP: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.

    Args:
        embed_dims: Token width.
        num_heads: Attention heads.
        mlp_dims: Hidden width of the MLP.
        act_layer: MLP activation (QuickGELU for OpenAI weights, GELU for open_clip's LAION weights).
    """

    def __init__(self, embed_dims: int, num_heads: int, mlp_dims: int, act_layer: type = QuickGELU) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dims)
        self.attn = CLIPAttention(embed_dims, num_heads)
        self.ln_2 = nn.LayerNorm(embed_dims)
        self.mlp = nn.Sequential(
            OrderedDict([('c_fc', nn.Linear(embed_dims, mlp_dims)), ('gelu', act_layer()),
                         ('c_proj', nn.Linear(mlp_dims, embed_dims))]))

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        """The block's output; with ``return_attn`` also its attention probabilities (explicit path)."""
        if not return_attn:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        y, attn = self.attn(self.ln_1(x), return_attn=True)
        x = x + y
        return x + self.mlp(self.ln_2(x)), attn


class CLIPTransformer(nn.Module):
    """The stack of blocks, under ``transformer.resblocks`` as in OpenAI's checkpoints."""

    def __init__(self, embed_dims: int, num_layers: int, num_heads: int, mlp_dims: int,
                 act_layer: type) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(
            *[CLIPResidualBlock(embed_dims, num_heads, mlp_dims, act_layer) for _ in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


def to_2tuple(size: ImgSize) -> Tuple[int, int]:
    """``224`` or ``(224, 224)`` -> ``(224, 224)``."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


@MODELS.register_module()
class CLIPTeacher(BaseTeacher):
    """CLIP's vision transformer (up to ``ln_post``, no projection) read from a local checkpoint.

    The architecture is inferred from the checkpoint: width from ``conv1``'s output channels, depth from the
    number of ``transformer.resblocks``, patch size from ``conv1``'s kernel and the native resolution from the
    number of position embeddings. Its target is every token of the last block after ``ln_post``.

    Args:
        checkpoint: An OpenAI TorchScript archive (e.g. ``ViT-B-16.pt``) or a state dict in OpenAI/open_clip
            naming (see :func:`load_clip_visual_state_dict`). Never downloaded.
        quick_gelu: QuickGELU activations (OpenAI's weights, default) rather than ``nn.GELU`` (open_clip's
            LAION weights). A state dict does not record which one the tower was trained with.
        img_size: Input size (int or (h, w)) the teacher will see. When it differs from the native one the
            position embedding is interpolated once, at build time. Defaults to the native size.
        num_heads: Attention heads; defaults to ``width // 64`` (all CLIP ViTs).
        dtype: Weight/compute dtype, see :class:`BaseTeacher`.
        init_cfg: Unused; the weights come from ``checkpoint``.
    """

    def __init__(self,
                 checkpoint: str,
                 quick_gelu: bool = True,
                 img_size: Optional[ImgSize] = None,
                 num_heads: Optional[int] = None,
                 dtype: Optional[str] = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            mean=[v * 255 for v in CLIP_MEAN],
            std=[v * 255 for v in CLIP_STD],
            dtype=dtype,
            init_cfg=init_cfg)
        state_dict = load_clip_visual_state_dict(checkpoint)
        state_dict.pop('proj', None)
        width, patch, native = self._infer_arch(state_dict, checkpoint)
        num_layers = len(block_indices(state_dict))
        mlp_dims = state_dict['transformer.resblocks.0.mlp.c_fc.weight'].shape[0]
        self.checkpoint = checkpoint
        self.embed_dims = width
        self.patch_size = patch
        self.num_layers = num_layers
        self.num_heads = num_heads or width // 64
        self.native_img_size = (native, native)
        self.img_size = to_2tuple(img_size) if img_size is not None else self.native_img_size
        grid = self._grid(self.img_size)
        act_layer = QuickGELU if quick_gelu else nn.GELU

        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(1 + grid[0] * grid[1], width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = CLIPTransformer(width, num_layers, self.num_heads, mlp_dims, act_layer)
        self.ln_post = nn.LayerNorm(width)

        native = math.isqrt(state_dict['positional_embedding'].shape[0] - 1)
        state_dict['positional_embedding'] = resize_pos_embed(
            state_dict['positional_embedding'][None], (native, native), grid, mode='bicubic', num_extra_tokens=1)[0]
        self._check_no_extra_keys(state_dict, checkpoint)
        self.load_state_dict(state_dict, strict=True)
        self._freeze()

    def _check_no_extra_keys(self, state_dict: Dict[str, torch.Tensor], checkpoint: str) -> None:
        """Tensors of a tower variant this class does not build (layer scale, attentional pooling...)."""
        extra = sorted(set(state_dict) - set(self.state_dict()))
        if extra:
            raise ValueError(f'{checkpoint}: CLIPTeacher builds the OpenAI CLIP tower only; the checkpoint '
                             f'also has {extra[:8]}{" ..." if len(extra) > 8 else ""}')

    @staticmethod
    def _infer_arch(state_dict: Dict[str, torch.Tensor], checkpoint: str) -> Tuple[int, int, int]:
        """(width, patch size, native square resolution) of the tower in ``state_dict``."""
        width, _, patch, patch_w = state_dict['conv1.weight'].shape
        num_patches = state_dict['positional_embedding'].shape[0] - 1
        side = math.isqrt(num_patches)
        if patch != patch_w or side * side != num_patches:
            raise ValueError(f'{checkpoint}: expected square patches and a square position grid, got conv1 '
                             f'kernel {patch}x{patch_w} and {num_patches} patch positions')
        return width, patch, side * patch

    def _grid(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        h, w = img_size
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f'CLIPTeacher input size {(h, w)} is not divisible by its patch size '
                             f'{self.patch_size}')
        return h // self.patch_size, w // self.patch_size

    def patch_grid(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        """Patch grid (h, w) for ``img_size``, which must be the size the teacher was built for.

        Raises:
            ValueError: ``img_size`` is not divisible by the patch size or is not the built size.
        """
        img_size = to_2tuple(tuple(img_size))
        grid = self._grid(img_size)
        if img_size != self.img_size:
            raise ValueError(f'CLIPTeacher was built for input size {self.img_size} (position embedding '
                             f'of {self.positional_embedding.shape[0] - 1} patches) but got {img_size}; '
                             'set its img_size to the crop size')
        return grid

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens + class token + position embedding, after ``ln_pre``: (B, 1+N, width)."""
        self.patch_grid(x.shape[-2:])
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls_token = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls_token, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 1+N, width) of the last block after ``ln_post``, class token first."""
        return self.ln_post(self.transformer(self._embed(x)))

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer attention probabilities (B, heads, 1+N, 1+N) in float32, class token first, via the
        explicit path, for ``x`` normalised with this teacher's statistics."""
        with nullcontext() if self.compute_dtype is None else torch.autocast(x.device.type, enabled=False):
            x = self._embed(x if self.compute_dtype is None else x.to(self.compute_dtype))
            maps = []
            for block in self.transformer.resblocks:
                x, attn = block(x, return_attn=True)
                maps.append(attn.float())
        return maps

    def extra_repr(self) -> str:
        return (f'checkpoint={self.checkpoint!r}, img_size={self.img_size}, '
                f'native_img_size={self.native_img_size}, num_heads={self.num_heads}')
