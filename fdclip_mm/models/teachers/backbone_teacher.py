"""The frozen teacher: any mmpretrain backbone plus the reader of its authors' checkpoint."""
import json
import logging
import os.path as osp
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule

from fdclip_mm.checkpoint import load_state_dict_exactly, read_teacher_checkpoint, refuse_nonfinite_weights
from fdclip_mm.file_identity import file_sha256
from fdclip_mm.precision import AUTO, resolve_low_precision
from fdclip_mm.registry import MODELS
from ..builder import build_model
from ..feature_map import FeatureMap, backbone_features, output_layout
from ..image_statistics import IMAGENET_MEAN, IMAGENET_STD
from .attention_probabilities import layer_attention_maps
from .families import family_defaults

_DTYPES = {None: None, 'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
#: Buffers the backbone computes from its config (window indices, masks): not read from a checkpoint.
COMPUTED_BUFFERS = ('relative_position_index', 'relative_coords_table', 'attn_mask')


@MODELS.register_module()
class BackboneTeacher(BaseModule):
    """A frozen mmpretrain backbone whose chosen output is the distillation target.

    The backbone is built from ``backbone`` (``VisionTransformer`` in CLIP, DINOv2, MAE / DINO / DeiT form,
    ``SwinTransformer``, ``ConvNeXt``, ``ResNet`` ...) and loaded exactly (no missing, unexpected or misshapen
    tensor) from ``checkpoint`` through ``reader`` (see :mod:`.readers`). What it distils is that
    backbone's single output: a ViT's tokens after its final norm (``out_type='raw'``, ``final_norm=True``,
    ``out_indices=-1`` or another layer), a Swin / ConvNeXt stage after its norm, a ResNet stage.

    The teacher never trains (as open_clip's locked towers): parameters do not require grad, ``train()`` keeps
    it in eval mode, ``forward`` runs without a graph, and the distiller leaves it out of every checkpoint.
    A checkpoint holding a NaN or infinite value is refused when it is loaded, naming the tensors. A float16
    teacher on the CPU (which has no fast float16 products: a probe of the demo measured its step 3.7x slower
    than in float32) warns at its first batch.

    Args:
        backbone: mmpretrain backbone config, e.g. ``dict(type='mmpretrain.VisionTransformer', arch='b', ...)``;
            with ``family``, only what differs from the family's defaults (``arch``, ``patch_size``, ...).
        checkpoint: The authors' file (never downloaded).
        family: A teacher family of :data:`~fdclip_mm.models.teachers.families.TEACHER_FAMILIES` (``'clip'``,
            ``'open_clip'``, ``'timm_vit'``, ``'dinov2'``, ``'esvit_swin'``): the defaults of ``reader``,
            ``mean``, ``std`` and of the backbone config (e.g. CLIP's pre-norm, LayerNorm eps and QuickGELU).
        reader: Name of the reader that maps ``checkpoint`` into the backbone's keys: ``'clip'``,
            ``'timm_vit'``, ``'dinov2'``, ``'esvit_swin'`` or ``'mmpretrain'``; defaults to the family's, else
            ``'mmpretrain'``.
        mean: Per-channel input mean on the 0-255 scale (RGB); the family's, else ImageNet's by default.
        std: Per-channel input std on the 0-255 scale (RGB).
        img_size: Input size (int or (h, w)) the teacher sees: an image of another size is resized to it
            (bicubic, antialiased), as the official code does for its L/14 teacher under a 256-pixel student;
            the first resize of each input size is logged.
            A backbone config without ``img_size`` is built for it (a ViT's position embedding is resized
            once, at build time). None: the backbone config's ``img_size`` if it sets one, else the images as
            they come.
        dtype: ``'auto'`` (default): ``'bfloat16'`` where the device runs bf16 natively (CUDA with compute
            capability >= 8.0, a CPU with AVX512-BF16 or AMX), ``'float16'`` on older GPUs (V100, as the
            official code), None on other CPUs (see :mod:`fdclip_mm.precision`). ``'bfloat16'`` /
            ``'float16'`` hold the weights in that type and run without autocast; ``'float32'`` holds and runs
            fp32 even under autocast; None keeps fp32 weights and follows the caller's autocast.
        init_cfg: Unused: the weights come from ``checkpoint``.

    Attributes:
        layout: How the backbone's output is laid out (:func:`~fdclip_mm.models.feature_map.output_layout`).
        embed_dims: Channels of the target.
        patch_size: Patch stride of a ViT backbone (None for hierarchical ones).
    """

    def __init__(self,
                 backbone: dict,
                 checkpoint: str,
                 family: Optional[str] = None,
                 reader: Optional[str] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 img_size: Optional[Union[int, Sequence[int]]] = None,
                 dtype: Optional[str] = AUTO,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if dtype not in _DTYPES and dtype != AUTO:
            raise ValueError(f'teacher dtype must be one of {[AUTO, *_DTYPES]}, got {dtype!r}')
        self.compute_dtype = _DTYPES[resolve_low_precision(dtype, 'teacher dtype')]
        defaults = family_defaults(family)
        self.family = family
        self.mean = tuple(float(v) for v in (mean or defaults.get('mean', IMAGENET_MEAN)))
        self.std = tuple(float(v) for v in (std or defaults.get('std', IMAGENET_STD)))
        reader = reader or defaults.get('reader', 'mmpretrain')
        backbone = {**defaults.get('backbone', {}), **backbone}
        if img_size is None:
            img_size = backbone.get('img_size')
        elif 'img_size' not in backbone:
            backbone['img_size'] = img_size
        self.img_size = None if img_size is None else _pair(img_size)
        self.checkpoint = checkpoint
        self.reader = reader
        self._logged_resizes = set()
        self._warned_slow = False
        self.backbone_cfg = backbone
        self.backbone = build_model(backbone, scope='mmpretrain')
        self.layout = output_layout(self.backbone)
        self.embed_dims = self.layout.channels
        self.patch_size = None if self.layout.patch_stride is None else self.layout.patch_stride[0]
        self._load(read_teacher_checkpoint(reader, checkpoint))
        if self.compute_dtype is not None:
            self.to(self.compute_dtype)
        for param in self.parameters():
            param.requires_grad_(False)
        self.train(False)

    def _load(self, state_dict: dict) -> None:
        refuse_nonfinite_weights(state_dict, f'teacher checkpoint {self.checkpoint}')
        own = self.backbone.state_dict()
        state_dict = dict(state_dict)
        for key in own:
            if key.endswith(COMPUTED_BUFFERS) and key not in state_dict:
                state_dict[key] = own[key]
        load_state_dict_exactly(
            self.backbone,
            state_dict,
            self.checkpoint,
            hint=f"check that the teacher's backbone config matches the file and that reader={self.reader!r} "
            'is the one for its family')

    def train(self, mode: bool = True) -> 'BackboneTeacher':
        """Stays in eval mode whatever ``mode`` asks: a teacher has no training behaviour."""
        return super().train(False)

    def init_weights(self) -> None:
        """Weights come from the teacher's checkpoint at build time; the Runner must not re-initialise them."""

    def identity(self) -> Dict:
        """What decides this teacher's outputs, for a teacher-target cache to record and compare: its checkpoint
        (the path for messages, the SHA-256 of the file's content to compare), the reader, the architecture
        (the backbone config), the input size and the precision it computes in."""
        dtype = self.compute_dtype or torch.float32
        return dict(
            checkpoint=osp.abspath(self.checkpoint),
            checkpoint_sha256=file_sha256(self.checkpoint).hex(),
            reader=self.reader,
            architecture=json.dumps(self.backbone_cfg, sort_keys=True, default=repr),
            img_size=None if self.img_size is None else list(self.img_size),
            dtype=str(dtype).replace('torch.', ''))

    def _warn_if_slow(self, x: torch.Tensor) -> None:
        if x.device.type == 'cpu' and self.compute_dtype == torch.float16 and not self._warned_slow:
            self._warned_slow = True
            print_log(
                f'teacher {self.checkpoint} computes in float16 on the CPU, which runs float16 products several '
                "times slower than float32; use dtype='auto' (bfloat16 where the CPU has it, else float32)",
                logger='current',
                level=logging.WARNING)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        self._warn_if_slow(x)
        if self.img_size is not None and tuple(x.shape[-2:]) != self.img_size:
            if tuple(x.shape[-2:]) not in self._logged_resizes:
                self._logged_resizes.add(tuple(x.shape[-2:]))
                print_log(
                    f'teacher {self.checkpoint}: {tuple(x.shape[-2:])} inputs are resized to its img_size '
                    f'{self.img_size} (bicubic, antialiased) before it runs; the student sees them as they '
                    'come',
                    logger='current')
            x = F.interpolate(x.float(), size=self.img_size, mode='bicubic', align_corners=False, antialias=True)
        return x if self.compute_dtype is None else x.to(self.compute_dtype)

    def _precision(self, x: torch.Tensor):
        return nullcontext() if self.compute_dtype is None else torch.autocast(x.device.type, enabled=False)

    def output_grid(self, img_size: Sequence[int]) -> Optional[Tuple[int, int]]:
        """Patch grid of the target for ``img_size`` inputs when the backbone is a ViT, else None."""
        if self.layout.patch_stride is None:
            return None
        return self.layout.grid(self.img_size or tuple(img_size))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> FeatureMap:
        """Target features (float32) of ``x``, normalised with this teacher's ``mean`` / ``std``."""
        with self._precision(x):
            x = self._prepare(x)
            features = backbone_features(self.backbone, self.backbone(x), x.shape[-2:])
        return FeatureMap(*(None if t is None else t.float() for t in features))

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer attention probabilities (B, heads, T, T), float32, class token first (ViT backbones)."""
        with self._precision(x):
            return layer_attention_maps(self.backbone, self._prepare(x))

    def extra_repr(self) -> str:
        return f'checkpoint={self.checkpoint!r}, reader={self.reader!r}, img_size={self.img_size}'


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f'img_size must be an int or (h, w), got {size}')
    return size
