"""Frozen ViT teachers published in timm's key layout: MAE, DINO and DeiT."""
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import resize_pos_embed
from torch import nn

from fdclip_mm.checkpoint_file import read_checkpoint
from fdclip_mm.registry import MODELS
from .base_teacher import BaseTeacher

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# Keys of the published files that are not part of the encoder up to its final norm.
IGNORED_PREFIXES = ('decoder', 'mask_token', 'head', 'fc_norm', 'pre_logits')
ImgSize = Union[int, Tuple[int, int]]


class TimmAttention(nn.Module):
    """timm's ``Attention`` (fused qkv with bias) computed with SDPA, or explicitly for the probabilities."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = None
        if return_attn:
            attn = ((q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)).softmax(-1)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(B, N, C))
        return (out, attn) if return_attn else out


class TimmMlp(nn.Module):

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TimmBlock(nn.Module):
    """Pre-norm block without layer scale (the MAE, DINO and DeiT ViT-B/16 releases have none)."""

    def __init__(self, embed_dims: int, num_heads: int, hidden_dims: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=eps)
        self.attn = TimmAttention(embed_dims, num_heads)
        self.norm2 = nn.LayerNorm(embed_dims, eps=eps)
        self.mlp = TimmMlp(embed_dims, hidden_dims)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        y = self.attn(self.norm1(x), return_attn=return_attn)
        attn = None
        if return_attn:
            y, attn = y
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return (x, attn) if return_attn else x


class PatchEmbed(nn.Module):

    def __init__(self, embed_dims: int, patch_size: int, in_channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def read_timm_vit_state_dict(path: str, wrapper_keys: Sequence[str], prefixes: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Encoder tensors of a timm-layout ViT checkpoint, read with ``weights_only=True``.

    Args:
        path: Checkpoint file.
        wrapper_keys: Keys that may hold the state dict (``'model'`` for MAE/DeiT, ``'teacher'`` for DINO's
            full training checkpoints); a bare state dict works too.
        prefixes: Key prefixes to strip (e.g. ``'backbone.'`` of DINO's ``teacher`` dict, ``'module.'``).
    """
    ckpt = read_checkpoint(path)
    for key in wrapper_keys:
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path} holds a {type(ckpt).__name__}, not a state dict')
    state = {}
    for key, value in ckpt.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.startswith(IGNORED_PREFIXES) and isinstance(value, torch.Tensor):
            state[key] = value
    return state


def _check_keys(state: Dict[str, torch.Tensor], path: str) -> int:
    required = ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'norm.weight', 'blocks.0.attn.qkv.weight']
    missing = [k for k in required if k not in state]
    if missing:
        raise KeyError(f'{path} is not a timm-layout ViT encoder with a final norm; missing keys: {missing} '
                       f'(found e.g. {sorted(state)[:5]})')
    extra = [k for k in state if not re.match(r'(cls_token|pos_embed|patch_embed\.|blocks\.\d+\.|norm\.)', k)]
    if extra:
        raise KeyError(f'{path} has tensors this teacher does not model: {extra[:8]} '
                       '(distillation tokens or layer scales are not supported)')
    return 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))


@MODELS.register_module()
class TimmViTTeacher(BaseTeacher):
    """A ViT in timm's layout (``blocks.N.attn.qkv``, ``norm``), as MAE, DINO and DeiT publish it.

    The target is every token of the last block after the final ``norm`` (CLS included). Width, depth, patch
    size and native resolution come from the weights; heads default to width // 64.

    Args:
        checkpoint: Path of the published file.
        img_size: Input size the teacher sees; the position embedding is resized once at build time.
        num_heads: Attention heads (default width // 64).
        eps: LayerNorm epsilon (1e-6 in all three releases).
        wrapper_keys: Where the state dict may sit inside the file.
        prefixes: Key prefixes to strip.
        mean: Input mean (0-255, RGB). ImageNet's by default.
        std: Input std (0-255, RGB).
        dtype: See :class:`BaseTeacher`.
    """

    def __init__(self,
                 checkpoint: str,
                 img_size: ImgSize = 224,
                 num_heads: Optional[int] = None,
                 eps: float = 1e-6,
                 wrapper_keys: Sequence[str] = ('model', 'state_dict', 'teacher'),
                 prefixes: Sequence[str] = ('module.', 'backbone.', 'encoder.'),
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 dtype: Optional[str] = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(mean, std, dtype=dtype, init_cfg=init_cfg)
        state = read_timm_vit_state_dict(checkpoint, wrapper_keys, prefixes)
        depth = _check_keys(state, checkpoint)
        width, _, patch, _ = state['patch_embed.proj.weight'].shape
        self.embed_dims, self.patch_size = width, patch
        self.num_heads = num_heads or width // 64
        if width % self.num_heads:
            raise ValueError(f'{checkpoint}: width {width} is not divisible by {self.num_heads} heads')
        native_side = int(round((state['pos_embed'].shape[1] - 1)**0.5))
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.grid = self.patch_grid(self.img_size, check=False)
        state['pos_embed'] = resize_pos_embed(state['pos_embed'].float(), (native_side, native_side), self.grid,
                                              mode='bicubic', num_extra_tokens=1)

        hidden = state['blocks.0.mlp.fc1.weight'].shape[0]
        self.patch_embed = PatchEmbed(width, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], width))
        self.blocks = nn.ModuleList([TimmBlock(width, self.num_heads, hidden, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=eps)
        self.load_state_dict(state, strict=True)
        self._freeze()

    def patch_grid(self, img_size: Tuple[int, int], check: bool = True) -> Tuple[int, int]:
        h, w = img_size
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f'input size {(h, w)} is not divisible by the teacher patch size {self.patch_size}')
        grid = (h // self.patch_size, w // self.patch_size)
        if check and grid != self.grid:
            raise ValueError(f'the teacher was built for {self.img_size} inputs, got {(h, w)}')
        return grid

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self.patch_grid(tuple(x.shape[-2:]))
        x = self.patch_embed(x)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self._embed(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer attention probabilities (B, heads, 1+N, 1+N), class token first."""
        x = self._embed(x)
        maps = []
        for block in self.blocks:
            x, attn = block(x, return_attn=True)
            maps.append(attn)
        return maps


@MODELS.register_module()
class MAETeacher(TimmViTTeacher):
    """MAE's pre-trained encoder (``mae_pretrain_vit_base.pth``: ``{'model': ...}``; decoder keys ignored)."""


@MODELS.register_module()
class DINOTeacher(TimmViTTeacher):
    """DINO's ViT (``dino_vitbase16_pretrain.pth``, or the ``teacher`` of a full checkpoint)."""


@MODELS.register_module()
class DeiTTeacher(TimmViTTeacher):
    """DeiT's ViT (``deit_base_patch16_224-b5f2ef4d.pth``: ``{'model': ...}``; the classifier is ignored)."""
