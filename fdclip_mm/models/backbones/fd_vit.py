"""The student ViT of Feature Distillation, also the backbone of every downstream task."""
import math
import re
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmpretrain.models.utils import resize_pos_embed
from torch import nn
from torch.utils.checkpoint import checkpoint

from fdclip_mm.checkpoint import load_state_dict_exactly, read_state_dict
from fdclip_mm.registry import MODELS
from .rel_pos_bias import (RelativePositionBias, fit_rel_pos_bias_table, geometric_resize_rel_pos_bias_table,
                           infer_grid, select_token_bias)
from .vit_block import ViTBlock

POS_EMBEDS = ('ape', 'rpb', 'shared_rpb')
INIT_STD = 0.02
OUT_TYPES = ('raw', 'cls_token', 'featmap', 'avg_featmap')


def trunc_normal_one_std_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fills ``tensor`` in place from N(0, std^2) truncated to [-std, std] (measured std ~0.54 x ``std``).

    By inverse transform sampling (a uniform draw mapped through the normal's inverse CDF), as torch's
    ``trunc_normal_`` did up to 2.x. Deliberately not ``nn.init.trunc_normal_``: in torch 2.14 it redraws the whole
    tensor until no value falls outside, ~13 passes at this truncation, which made building a ViT-B take 15-30 s on
    2 CPU cores (``_no_grad_trunc_normal_``); the distribution is the same.
    """
    with torch.no_grad():
        low, high = (0.5 * (1. + math.erf(x / math.sqrt(2.))) for x in (-1., 1.))
        tensor.uniform_(2 * low - 1, 2 * high - 1).erfinv_().mul_(std * math.sqrt(2.)).clamp_(-std, std)
    return tensor


@MODELS.register_module()
class FDViT(BaseModule):
    """BEiT-style ViT: q/v biases, layer scale, LayerNorm eps 1e-6 and a switchable position encoding.

    The distillation student (``out_type='raw'``: all tokens after the final norm), the classification
    backbone (``'avg_featmap'``: mean of patch tokens, CLS excluded, then ``ln2``) and the dense-task
    backbone (``'featmap'`` with several ``out_indices``). Parameter names follow mmpretrain's ``BEiTViT``
    except the per-layer RPB, which lives in ``layers.N.attn.rel_pos_bias``; BEiT checkpoints load as they are.

    Loading a state dict adapts it to this model: a shared RPB table is copied into every layer when the
    model uses per-layer tables; RPB tables and absolute position embeddings are resized to this model's
    patch grid (an RPB table as the official FD fine-tuning and BEiT do, ``geometric_resize_rel_pos_bias_table``,
    on square grids, else ``fit_rel_pos_bias_table``; position embeddings bicubically); and the distilled final
    norm ``ln1`` is dropped when ``final_norm=False`` (classification and dense-task backbones). A distilled
    student thus loads with no missing and no unexpected key. Inputs of any size divisible by the patch size
    run; their RPB tables are fitted on the fly when the grid differs from ``img_size``'s (the table keeps the
    offsets a smaller grid has and is resized bicubically along longer sides, ``fit_rel_pos_bias_table``).

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
    num_extra_tokens = 1
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
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        self.num_heads = self.arch_settings['num_heads']
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f'pos_embed must be one of {POS_EMBEDS}, got {pos_embed!r}')
        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}, got {out_type!r}')
        self.pos_embed_type = pos_embed
        self.out_type = out_type
        self.with_cp = with_cp
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = patch_size
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ValueError(f'img_size {self.img_size} is not divisible by patch_size {patch_size}')
        self.patch_resolution = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=self.embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=patch_size,
            input_size=self.img_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, self.embed_dims)) \
            if pos_embed == 'ape' else None
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.rel_pos_bias = RelativePositionBias(self.patch_resolution, self.num_heads) \
            if pos_embed == 'shared_rpb' else None

        self.out_indices = self._parse_out_indices(out_indices)
        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.layers = nn.ModuleList([
            ViTBlock(
                self.embed_dims,
                self.num_heads,
                self.arch_settings['feedforward_channels'],
                layer_scale_init_value=layer_scale_init_value,
                drop_path_rate=dpr[i],
                rel_pos_grid=self.patch_resolution if pos_embed == 'rpb' else None,
                qv_bias=qv_bias,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                attn_backend=attn_backend) for i in range(self.num_layers)
        ])
        self.final_norm = final_norm
        self.ln1 = build_norm_layer(norm_cfg, self.embed_dims)[1] if final_norm else None
        self.ln2 = build_norm_layer(norm_cfg, self.embed_dims)[1] if out_type == 'avg_featmap' else None

        self._init_default_weights()
        self._register_load_state_dict_pre_hook(self._adapt_state_dict)

    # ----------------------------------------------------------------------------------------- build
    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise ValueError(f'unknown arch {arch!r}; choose from {sorted(set(self.arch_zoo))} or pass a dict')
            return dict(self.arch_zoo[arch.lower()])
        needed = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not needed <= set(arch):
            raise ValueError(f'a custom arch must be a dict with keys {sorted(needed)}, got {arch!r}')
        return dict(arch)

    def _parse_out_indices(self, out_indices: Union[int, Sequence[int]]) -> List[int]:
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        parsed = []
        for index in indices:
            resolved = index + self.num_layers if index < 0 else index
            if not 0 <= resolved < self.num_layers:
                raise ValueError(f'out_indices entry {index} is out of range for {self.num_layers} layers')
            parsed.append(resolved)
        return parsed

    def _init_default_weights(self) -> None:
        """The official FD student's init: BEiT's truncated normal and a depth rescale of residual projections.

        Linear and patch-embedding weights, the class token and the absolute position embedding are drawn
        from a normal of std 0.02 truncated at plus/minus ONE std (``a=-std, b=std``, as the official
        ``VisionTransformerForFD``), so their measured std is about 0.0108; biases are zero; LayerNorms are
        one/zero; RPB tables, q/v biases stay zero. Block ``i``'s attention and FFN output projections are then
        divided by ``sqrt(2 (i + 1))``. (mmengine's ``trunc_normal_(std=.02)`` cuts at plus/minus 2 in absolute
        units, i.e. draws a plain normal with twice this spread.)
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
        """mmengine's initialisation, except that ``init_cfg=dict(type='Pretrained', checkpoint=F, prefix=P)``
        loads ``F`` exactly: a missing, unexpected or misshapen tensor stops the build with the keys at fault
        (mmengine's ``PretrainedInit`` warns and keeps the random weights of whatever did not match). The load
        hook still fits position tables to this grid and copies a shared RPB table into per-layer ones.
        """
        init_cfg = self.init_cfg
        if not (isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'):
            super().init_weights()
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

    # --------------------------------------------------------------------------------------- forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Patch embedding, class token and absolute position embedding: (B, 1+N, C) and the patch grid."""
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f'input of size {tuple(x.shape[-2:])} is not divisible by patch size {self.patch_size}')
        x, grid = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, grid, mode='bicubic', num_extra_tokens=1)
        return self.drop_after_pos(x), tuple(grid)

    def _run_layer(self, layer: ViTBlock, x: torch.Tensor, bias, grid, token_ids=None) -> torch.Tensor:
        if self.with_cp and self.training and x.requires_grad:
            return checkpoint(layer, x, bias, grid, False, token_ids, use_reentrant=False)
        return layer(x, bias, grid, token_ids=token_ids)

    def forward_features(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """All tokens of the last block after the final norm, class token first: (B, 1+N, C).

        Args:
            x: Images (B, 3, H, W).
            ids_keep: Optional (B, K) indices of the patches to encode (MAE-style token dropping, no mask
                token): only the class token and these K patches go through the blocks, each keeping its
                absolute position embedding and its relative position bias. Returns (B, 1+K, C).
        """
        x, grid = self.embed(x)
        token_ids = None
        if ids_keep is not None:
            token_ids = torch.cat([ids_keep.new_zeros(ids_keep.shape[0], 1), ids_keep + 1], dim=1)
            x = x.gather(1, token_ids[..., None].expand(-1, -1, x.shape[-1]))
        bias = self.rel_pos_bias(grid) if self.rel_pos_bias is not None else None
        if bias is not None and token_ids is not None:
            bias = select_token_bias(bias, token_ids)
        for layer in self.layers:
            x = self._run_layer(layer, x, bias, grid, token_ids)
        return self.ln1(x) if self.final_norm else x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Outputs of the blocks in ``out_indices``, formatted by ``out_type`` (mmpretrain convention)."""
        x, grid = self.embed(x)
        bias = self.rel_pos_bias(grid) if self.rel_pos_bias is not None else None
        outs = []
        for i, layer in enumerate(self.layers):
            x = self._run_layer(layer, x, bias, grid)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, grid))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, 1:]
        if self.out_type == 'featmap':
            return patches.reshape(x.shape[0], *grid, -1).permute(0, 3, 1, 2).contiguous()
        return self.ln2(patches.mean(dim=1))

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per-layer attention probabilities (B, heads, 1+N, 1+N), class token first, via the explicit path."""
        x, grid = self.embed(x)
        bias = self.rel_pos_bias(grid) if self.rel_pos_bias is not None else None
        maps = []
        for layer in self.layers:
            x, attn = layer(x, bias, grid, return_attn=True)
            maps.append(attn)
        return maps

    # ------------------------------------------------------------------------------ optimizer helpers
    def no_weight_decay(self) -> Set[str]:
        """The class token and the absolute position embedding, as in the official code.

        Norms, biases and other 1-D parameters are left to the optimizer constructor. RPB tables (2-D) are
        decayed, as the official code does in distillation and fine-tuning; both our constructors can exempt
        them with ``paramwise_cfg=dict(rel_pos_bias_decay_mult=0.)`` (BEiT's fine-tuning choice).
        """
        return {'cls_token', 'pos_embed'} if self.pos_embed is not None else {'cls_token'}

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for layer-wise lr decay: (depth, num_layers + 2).

        Embeddings are depth 0, block ``i`` is ``i + 1``; the final norms, the shared RPB table and anything
        outside the backbone (``prefix`` not matched, e.g. a head) are at the top, ``num_layers + 1``.
        """
        total = self.num_layers + 2
        if not param_name.startswith(prefix):
            return total - 1, total
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed'):
            return 0, total
        if name.startswith('layers.'):
            return int(name.split('.')[1]) + 1, total
        return total - 1, total

    # ------------------------------------------------------------------------------ checkpoint loading
    def _adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str, *args, **kwargs) -> None:
        """Makes BEiT / shared-RPB / other-resolution checkpoints fit this model (a load pre-hook)."""
        for key in [k for k in state_dict if k.startswith(prefix) and k.endswith('relative_position_index')]:
            del state_dict[key]
        beit_layer_table = re.compile(re.escape(prefix) + r'layers\.(\d+)\.attn\.relative_position_bias_table$')
        for key in [k for k in state_dict if beit_layer_table.match(k)]:
            new_key = key.replace('attn.relative_position_bias_table', 'attn.rel_pos_bias.relative_position_bias_table')
            state_dict[new_key] = state_dict.pop(key)

        if not self.final_norm:
            final_norm_keys = [k for k in state_dict if k.startswith(prefix + 'ln1.')]
            for key in final_norm_keys:
                del state_dict[key]
            if final_norm_keys:
                print_log(
                    'Dropped the final norm ln1 of the checkpoint (this backbone has final_norm=False)',
                    logger='current')

        shared_key = prefix + 'rel_pos_bias.relative_position_bias_table'
        if self.pos_embed_type == 'rpb' and shared_key in state_dict:
            shared = state_dict.pop(shared_key)
            for i in range(self.num_layers):
                state_dict.setdefault(f'{prefix}layers.{i}.attn.rel_pos_bias.relative_position_bias_table',
                                      shared.clone())
            print_log(f'Copied the shared RPB table into the {self.num_layers} layers', logger='current')

        for name, param in self.named_parameters():
            key = prefix + name
            if key not in state_dict or state_dict[key].shape == param.shape:
                continue
            if name.endswith('relative_position_bias_table'):
                src, dst = infer_grid(state_dict[key].shape[0]), self.patch_resolution
                if dst[0] == dst[1]:
                    state_dict[key] = geometric_resize_rel_pos_bias_table(state_dict[key], src, dst)
                    how = 'geometric bicubic spline, as the official FD fine-tuning'
                else:
                    state_dict[key] = fit_rel_pos_bias_table(state_dict[key], src, dst)
                    how = 'kept offsets, bicubic along longer sides'
                print_log(f'Resized {key} from a {src} to a {dst} patch grid ({how})', logger='current')
            elif name == 'pos_embed':
                side = int(math.isqrt(state_dict[key].shape[1] - 1))
                state_dict[key] = resize_pos_embed(
                    state_dict[key], (side, side), self.patch_resolution, mode='bicubic', num_extra_tokens=1)
                print_log(
                    f'Resized {key} from a {(side, side)} to a {self.patch_resolution} patch grid', logger='current')
