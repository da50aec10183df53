"""The student ViT of Feature Distillation, also the backbone of every downstream task."""
import math
import re
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import torch
from mmengine.logging import print_log
from mmpretrain.models.backbones import BEiTViT
from mmpretrain.models.utils import resize_pos_embed, to_2tuple
from torch import nn
from torch.utils.checkpoint import checkpoint

from fdclip_mm.checkpoint import load_state_dict_exactly, read_state_dict
from fdclip_mm.registry import MODELS
from .rel_pos_bias import (Grid, RelativePositionBias, fit_rel_pos_bias_table, geometric_resize_rel_pos_bias_table,
                           infer_grid)
from .vit_block import ViTBlock

POS_EMBEDS = ('ape', 'rpb', 'shared_rpb')
INIT_STD = 0.02


def trunc_normal_one_std_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fills ``tensor`` in place from N(0, std^2) truncated to [-std, std] (measured std ~0.54 x ``std``) by inverse
    transform sampling, as torch's ``trunc_normal_`` did up to 2.x; torch 2.14's redraws the whole tensor until no
    value falls outside (~13 passes here: 15-30 s to build a ViT-B on 2 CPU cores)."""
    with torch.no_grad():
        low, high = (0.5 * (1. + math.erf(x / math.sqrt(2.))) for x in (-1., 1.))
        tensor.uniform_(2 * low - 1, 2 * high - 1).erfinv_().mul_(std * math.sqrt(2.)).clamp_(-std, std)
    return tensor


@MODELS.register_module()
class FDViT(BEiTViT):
    """mmpretrain's ``BEiTViT`` as the FD student and downstream backbone.

    FD adds ``forward_features(x, ids_keep)`` (tokens after the final norm; masked input keeps a subset),
    ``forward_attention``, its blocks (:class:`ViTBlock`), the official init, RPB tables for any input grid and a
    checkpoint adaptation on load. Parameter names are ``BEiTViT``'s but for ``layers.N.attn.rel_pos_bias.*``.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` (or their initials), or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads`` and ``feedforward_channels``.
        img_size: Training input size; it fixes the size of the position encodings.
        patch_size: Patch size (16 for B, 14 for L in the paper).
        in_channels: Image channels.
        pos_embed: ``'ape'`` (absolute), ``'rpb'`` (one relative bias table per layer) or ``'shared_rpb'``
            (one table shared by all layers, the distillation default).
        out_type: ``'raw'``, ``'cls_token'``, ``'featmap'`` or ``'avg_featmap'``.
        out_indices: Blocks whose output ``forward`` returns (negative counts from the end).
        final_norm: Apply ``ln1`` after the last block. Needed for distillation.
        drop_rate: Dropout after position embedding, attention projection and FFN.
        attn_drop_rate: Dropout on attention probabilities.
        drop_path_rate: Stochastic depth of the last block; earlier blocks grow linearly from 0.
        layer_scale_init_value: Initial layer scale (0 disables it).
        qv_bias: Learnable q and v biases (no k bias).
        norm_cfg: Norm config.
        act_cfg: FFN activation config.
        with_cp: Activation checkpointing of every block (saves memory, costs one more forward).
        attn_backend: Attention implementation, see :class:`~fdclip_mm.models.backbones.Attention`
            (``'auto'`` picks by device and mode).
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=...)``.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768)),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
        **dict.fromkeys(['l', 'large'], dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096)),
    }
    #: ``forward_features(x, ids_keep)`` encodes a subset of the patch tokens (the distiller's masked input).
    encodes_token_subsets = True

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 pos_embed: str = 'shared_rpb',
                 out_type: str = 'raw',
                 out_indices: Union[int, Sequence[int]] = -1,
                 final_norm: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 0.1,
                 qv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 with_cp: bool = False,
                 attn_backend: str = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f'pos_embed must be one of {POS_EMBEDS}, got {pos_embed!r}')
        arch = self._parse_arch(arch)
        if any(side % patch_size for side in to_2tuple(img_size)):
            raise ValueError(f'img_size {img_size} is not divisible by patch_size {patch_size}')
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        for index in out_indices:
            if not -arch['num_layers'] <= index < arch['num_layers']:
                raise ValueError(f'out_indices entry {index} is out of range for {arch["num_layers"]} layers')
        # BEiTViT has no way to choose the class of its blocks: it builds none here, and FD's join its list below.
        # Its shared RelativePositionBias (replaced below) calls torch.meshgrid without `indexing`, which warns.
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='torch.meshgrid', category=UserWarning)
            super().__init__(
                arch=dict(arch, num_layers=0),
                img_size=img_size,
                patch_size=patch_size,
                in_channels=in_channels,
                out_indices=[],
                drop_rate=drop_rate,
                norm_cfg=norm_cfg,
                final_norm=final_norm,
                out_type=out_type,
                use_abs_pos_emb=pos_embed == 'ape',
                use_rel_pos_bias=False,
                use_shared_rel_pos_bias=pos_embed == 'shared_rpb',
                init_cfg=init_cfg)
        self.arch_settings, self.num_layers, self.num_heads = arch, arch['num_layers'], arch['num_heads']
        self.out_indices = [index % self.num_layers for index in out_indices]
        self.layers.extend(
            ViTBlock(
                self.embed_dims,
                self.num_heads,
                arch['feedforward_channels'],
                layer_scale_init_value=layer_scale_init_value,
                drop_path_rate=rate,
                rel_pos_grid=self.patch_resolution if pos_embed == 'rpb' else None,
                qv_bias=qv_bias,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                attn_backend=attn_backend) for rate in torch.linspace(0, drop_path_rate, self.num_layers).tolist())
        if pos_embed == 'shared_rpb':  # in BEiTViT's slot: parameters keep the order optimizer states index them by
            self.rel_pos_bias = RelativePositionBias(self.patch_resolution, self.num_heads)
        for name, built in (('ln1', final_norm), ('ln2', out_type == 'avg_featmap')):
            if not built:  # BEiTViT leaves the attribute out
                setattr(self, name, None)
        self.patch_size, self.pos_embed_type, self.with_cp = patch_size, pos_embed, with_cp
        self._init_default_weights()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(f'unknown arch {arch!r}; choose from {sorted(set(cls.arch_zoo))} or pass a dict')
            return dict(cls.arch_zoo[arch.lower()])
        needed = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not needed <= set(arch):
            raise ValueError(f'a custom arch must be a dict with keys {sorted(needed)}, got {arch!r}')
        return dict(arch)

    def _init_default_weights(self) -> None:
        """The official FD student's init (``VisionTransformerForFD``): Linear and patch-embedding weights, class token
        and absolute position embedding from N(0, 0.02^2) cut at plus/minus ONE std (mmengine's ``trunc_normal_``
        cuts at plus/minus 2 absolute), zero biases, unit norms; block ``i``'s output projections / sqrt(2 (i+1)).
        """
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                trunc_normal_one_std_(m.weight, INIT_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_one_std_(self.cls_token, INIT_STD)
        if self.pos_embed is not None:
            trunc_normal_one_std_(self.pos_embed, INIT_STD)
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                layer.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                layer.ffn.layers[1].weight.div_(math.sqrt(2.0 * (i + 1)))

    def init_weights(self) -> None:
        """mmengine's (not ``BEiTViT``'s, which redraws ``pos_embed``), except that ``init_cfg=dict(type='Pretrained',
        checkpoint=F, prefix=P)`` loads ``F`` exactly (through the load hook): a missing, unexpected or misshapen
        tensor stops the build with the keys at fault, where mmengine's ``PretrainedInit`` warns and goes on."""
        init_cfg = self.init_cfg
        if not (isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'):
            super(BEiTViT, self).init_weights()
            return
        prefix = init_cfg.get('prefix') or ''
        if prefix and not prefix.endswith('.'):
            prefix += '.'
        checkpoint = init_cfg['checkpoint']
        load_state_dict_exactly(
            self,
            read_state_dict(checkpoint, prefix),
            checkpoint,
            hint='A backbone file comes from a distillation checkpoint through '
            'tools/model_converters/fd_to_backbone.py (dense tasks) or fd_to_classifier.py (classification, '
            "with prefix='backbone.')")
        self._is_init = True
        print_log(f'Loaded {type(self).__name__} from {checkpoint}', logger='current')

    def train(self, mode: bool = True) -> 'FDViT':
        super().train(mode)
        return self  # as nn.Module's (mmpretrain's BaseBackbone.train returns None)

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Grid]:
        """Patch embedding, class token and absolute position embedding: (B, 1+N, C) and the patch grid."""
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f'input of size {tuple(x.shape[-2:])} is not divisible by patch size {self.patch_size}')
        x, grid = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, grid, self.interpolate_mode, 1)
        return self.drop_after_pos(x), tuple(grid)

    def run_blocks(self,
                   x: torch.Tensor,
                   ids_keep: Optional[torch.Tensor] = None,
                   return_attn: bool = False) -> Iterator[Tuple[torch.Tensor, Grid, Optional[torch.Tensor]]]:
        """Embeds images (B, 3, H, W), then yields each block's output, the patch grid and, with ``return_attn``,
        the block's attention probabilities (explicit path). ``ids_keep`` as in :meth:`forward_features`."""
        x, grid = self.embed(x)
        token_ids = None
        if ids_keep is not None:
            token_ids = torch.cat([ids_keep.new_zeros(ids_keep.shape[0], 1), ids_keep + 1], dim=1)
            x = x.gather(1, token_ids[..., None].expand(-1, -1, x.shape[-1]))
        bias = None if self.rel_pos_bias is None else self.rel_pos_bias(grid, token_ids)
        for layer in self.layers:
            args = (x, bias, grid, return_attn, token_ids)
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(layer, *args, use_reentrant=False)
            else:
                x = layer(*args)
            x, attn = x if return_attn else (x, None)
            yield x, grid, attn

    def forward_features(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """All tokens of the last block after the final norm, class token first: (B, 1+N, C) for images
        (B, 3, H, W); with (B, K) patch indices ``ids_keep`` (MAE-style token dropping, no mask token) only the class
        token and these patches, each with its own position encoding, go through the blocks: (B, 1+K, C)."""
        for x, _, _ in self.run_blocks(x, ids_keep):
            pass
        return self.ln1(x) if self.final_norm else x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Outputs of the blocks in ``out_indices``, formatted by ``out_type`` (``BEiTViT``'s convention)."""
        outs = []
        for i, (x, grid, _) in enumerate(self.run_blocks(x)):
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, grid))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: Grid) -> torch.Tensor:
        # A contiguous feature map (BEiTViT's is a permuted view) for the dense tasks' necks, as before.
        out = super()._format_output(x, hw)
        return out.contiguous() if self.out_type == 'featmap' else out

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer attention probabilities (B, heads, 1+N, 1+N), class token first, via the explicit path."""
        return [attn for _, _, attn in self.run_blocks(x, return_attn=True)]

    def no_weight_decay(self) -> Set[str]:
        """The class token and the absolute position embedding, as the official code; RPB tables are decayed
        (``paramwise_cfg=dict(rel_pos_bias_decay_mult=0.)`` exempts them), 1-D parameters left to the constructor."""
        return {'cls_token', 'pos_embed'} if self.pos_embed is not None else {'cls_token'}

    def _prepare_relative_position_bias_table(self, state_dict: Dict[str, torch.Tensor], prefix: str, *args,
                                              **kwargs) -> None:
        """``BEiTViT``'s load hook (whose resize needs SciPy's ``interp2d``, gone since 1.14) redone for FD: BEiT's
        per-layer tables renamed, a shared table copied into every layer of a per-layer model, RPB tables resized to
        this patch grid (square grids as the official FD fine-tuning: :func:`geometric_resize_rel_pos_bias_table`;
        else :func:`fit_rel_pos_bias_table`), the distilled final norm dropped when ``final_norm=False``."""
        final_norm = [] if self.final_norm else [k for k in state_dict if k.startswith(prefix + 'ln1.')]
        for key in final_norm:
            del state_dict[key]
        if final_norm:
            print_log('Dropped the final norm ln1 of the checkpoint (this backbone has final_norm=False)', 'current')
        for key in [k for k in state_dict if k.startswith(prefix)]:
            name = key[len(prefix):]
            if name.endswith('relative_position_index'):
                del state_dict[key]
            elif re.fullmatch(r'layers\.\d+\.attn\.relative_position_bias_table', name):
                state_dict[key.replace('.attn.', '.attn.rel_pos_bias.')] = state_dict.pop(key)
        shared_key = prefix + 'rel_pos_bias.relative_position_bias_table'
        if self.pos_embed_type == 'rpb' and shared_key in state_dict:
            shared = state_dict.pop(shared_key)
            for i in range(self.num_layers):
                state_dict.setdefault(f'{prefix}layers.{i}.attn.rel_pos_bias.relative_position_bias_table',
                                      shared.clone())
            print_log(f'Copied the shared RPB table into the {self.num_layers} layers', logger='current')
        for name, param in self.named_parameters():
            key = prefix + name
            if not name.endswith('relative_position_bias_table') or state_dict.get(key, param).shape == param.shape:
                continue
            src, dst = infer_grid(state_dict[key].shape[0]), self.patch_resolution
            if dst[0] == dst[1]:
                state_dict[key] = geometric_resize_rel_pos_bias_table(state_dict[key], src, dst)
                how = 'geometric bicubic spline, as the official FD fine-tuning'
            else:
                state_dict[key] = fit_rel_pos_bias_table(state_dict[key], src, dst)
                how = 'kept offsets, bicubic along longer sides'
            print_log(f'Resized {key} from a {src} to a {dst} patch grid ({how})', logger='current')
