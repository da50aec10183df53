"""Files in the layout the official FD code (SwinTransformer/Feature-Distillation) writes, at tiny sizes.

The models are timm's ``Beit`` and ``SwinTransformerV2``, the published implementations whose key layouts the
official ``VisionTransformer`` (BEiT's) and pre-release ``SwinTransformerV2`` share, with the differences of the
official files applied: its persistent buffers (``relative_position_index``, ``relative_coords_table``,
``attn_mask``), ``rpe_mlp`` for timm's ``cpb_mlp``, patch merging at the end of a stage (timm: at the start of the
next) and a plain ``head``. A distilled file wraps the student as ``encoder.*`` beside the 1x1 ``Conv1d`` projector
``decoder.0.*`` and the teacher ``feature_model.*``; a full file adds the official ``save_checkpoint``'s entries,
its config as a yacs ``CfgNode`` (a stand-in class in a module named ``yacs.config``, so yacs need not be
installed).
"""
import re
import sys
import types
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
from timm.models.beit import Beit
from timm.models.swin_transformer_v2 import SwinTransformerV2

from ..helpers.checkpoints import clip_visual_state_dict

Tensors = Dict[str, torch.Tensor]


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Adds noise to every parameter (zero-initialised tables, biases and scales become informative)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
    return model.eval()


def tiny_beit(img_size: int = 32,
              patch: int = 8,
              width: int = 32,
              depth: int = 2,
              heads: int = 2,
              distilled: bool = True,
              num_classes: int = 5,
              seed: int = 0) -> Beit:
    """The official ViT's architecture: distilled (shared RPB, final norm, all tokens) or fine-tuned (an RPB table
    per block, mean of the patch tokens -> fc_norm -> head). No absolute position embedding, q/v biases, layer
    scale 0.1, LayerNorm eps 1e-6."""
    model = Beit(
        img_size=img_size,
        patch_size=patch,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        qkv_bias=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=not distilled,
        use_shared_rel_pos_bias=distilled,
        init_values=0.1,
        num_classes=0 if distilled else num_classes,
        global_pool='token' if distilled else 'avg')
    return randomize_(model, seed)


def tiny_swinv2(img_size: int = 64, num_classes: int = 0, seed: int = 0) -> SwinTransformerV2:
    """A SwinV2 whose last window shrinks to its map (4 -> 2), as the released Swin's 14 -> 7."""
    model = SwinTransformerV2(
        img_size=img_size,
        patch_size=4,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        window_size=4,
        num_classes=num_classes)
    return randomize_(model, seed)


def official_vit_state(model: Beit) -> Tensors:
    """The official ViT's ``state_dict``: timm's plus the ``relative_position_index`` buffers it persists."""
    state = dict(model.state_dict())
    state.update({k: v for k, v in model.named_buffers() if k.endswith('relative_position_index')})
    return state


def official_swinv2_state(model: SwinTransformerV2) -> Tensors:
    """The official pre-release SwinV2's ``state_dict`` for the same weights as timm's ``model``."""
    state = dict(model.state_dict())
    state.update({
        k: v
        for k, v in model.named_buffers()
        if k.endswith(('relative_coords_table', 'relative_position_index', 'attn_mask'))
    })
    official = {}
    for key, value in state.items():
        key = re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) - 1}.downsample', key)
        key = key.replace('.cpb_mlp.', '.rpe_mlp.').replace('head.fc.', 'head.')
        official[key] = value
    return official


def clip_teacher_state(width: int = 48, patch: int = 8) -> Tensors:
    """An OpenAI CLIP model's keys (image and text towers), as the official code keeps it in ``feature_model``."""
    state = clip_visual_state_dict(width=width, layers=1, patch=patch)
    state.update({
        'positional_embedding': torch.zeros(7, 16),
        'token_embedding.weight': torch.zeros(10, 16),
        'transformer.resblocks.0.attn.in_proj_weight': torch.zeros(48, 16),
        'ln_final.weight': torch.ones(16),
        'text_projection': torch.zeros(16, 16),
        'logit_scale': torch.zeros(()),
    })
    return state


def vit_teacher_state(width: int = 48, patch: int = 8) -> Tensors:
    """A DINO / DeiT ViT's keys (timm's layout), as ``feature_model``."""
    return {
        'cls_token': torch.zeros(1, 1, width),
        'pos_embed': torch.zeros(1, 17, width),
        'patch_embed.proj.weight': torch.zeros(width, 3, patch, patch),
        'blocks.0.attn.qkv.weight': torch.zeros(3 * width, width),
        'norm.weight': torch.ones(width),
    }


def swin_teacher_state(width: int = 128) -> Tensors:
    """An EsViT Swin's keys, as ``feature_model``."""
    return {
        'patch_embed.proj.weight': torch.zeros(width, 3, 4, 4),
        'layers.0.blocks.0.attn.qkv.weight': torch.zeros(3 * width, width),
        'norm.weight': torch.ones(8 * width),
    }


def distilled_state(student: Tensors, student_width: int, teacher: Optional[Tensors], teacher_width: int) -> Tensors:
    """The official ``FD`` module's ``state_dict``: student, 1x1 Conv1d projector and (optionally) the teacher."""
    gen = torch.Generator().manual_seed(1)
    state = {'encoder.' + k: v for k, v in student.items()}
    state['decoder.0.weight'] = torch.randn(teacher_width, student_width, 1, generator=gen)
    state['decoder.0.bias'] = torch.randn(teacher_width, generator=gen)
    state.update({'feature_model.' + k: v for k, v in (teacher or {}).items()})
    return state


@contextmanager
def yacs_cfg_node_class() -> Iterator[type]:
    """A ``yacs.config.CfgNode`` look-alike (a dict with yacs' four instance attributes, one a set), importable by
    pickle under that name while the context lasts."""

    class CfgNode(dict):

        def __init__(self, init_dict: Optional[dict] = None) -> None:
            init_dict = dict(init_dict or {})
            for key, value in init_dict.items():
                if isinstance(value, dict):
                    init_dict[key] = CfgNode(value)
            super().__init__(init_dict)
            self.__dict__['__immutable__'] = True
            self.__dict__['__deprecated_keys__'] = set()
            self.__dict__['__renamed_keys__'] = {'EXAMPLE.RENAMED.KEY': ('EXAMPLE.KEY', 'a note')}
            self.__dict__['__new_allowed__'] = False

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    package, module = types.ModuleType('yacs'), types.ModuleType('yacs.config')
    module.CfgNode, package.config = CfgNode, module
    saved = {name: sys.modules.get(name) for name in ('yacs', 'yacs.config')}
    sys.modules.update({'yacs': package, 'yacs.config': module})
    try:
        yield CfgNode
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def write_official_file(path: str, model: Tensors, config: Optional[dict] = None, extra: Optional[dict] = None) -> None:
    """``torch.save`` as the official ``save_checkpoint`` (with ``config``), or the model's tensors alone."""
    if config is None:
        torch.save({'model': model}, path)
        return
    with yacs_cfg_node_class() as cfg_node:
        torch.save(
            {
                'model':
                model,
                'optimizer': {
                    'state': {},
                    'param_groups': [dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05, params=[0, 1])]
                },
                'lr_scheduler':
                dict(t_initial=300, lr_min=5e-6, warmup_t=10, base_values=[1e-3], noise_range_t=None),
                'scaler':
                dict(scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000, _growth_tracker=11),
                'max_accuracy':
                0.0,
                'epoch':
                299,
                'config':
                cfg_node(config),
                **(extra or {}),
            }, path)
