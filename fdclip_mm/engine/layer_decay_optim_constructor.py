"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``.

One constructor for mmpretrain, mmdet and mmsegmentation configs: mmpretrain's
``LearningRateDecayOptimWrapperConstructor`` needs ``get_layer_depth`` on the whole model (only its
``ImageClassifier`` has it), mmdet's and mmseg's layer-decay constructors recognise backbones by class name
(ConvNeXt / BEiT / MAE). Here the backbone is found by attribute path (``model.backbone`` in all three
libraries) and asked for each parameter's depth. mmdet's and mmseg's own ``SwinTransformer`` have no
``get_layer_depth``; their parameter names are mmpretrain's, so mmpretrain's Swin rule is applied to them.
"""
import os.path as osp
from collections import OrderedDict
from functools import partial
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from torch import nn

from fdclip_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS
from .nonfinite_loss import DEFAULT_WRAPPER
from .trainable_optim_constructor import RPB_TABLE_KEY

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with lr ``base_lr * rate ** (L + 1 - depth)`` and BEiT-style weight-decay exclusions.

    ``depth, num_depths = backbone.get_layer_depth(name, prefix)`` with ``num_depths = L + 2`` (embeddings
    at 0, block ``i`` at ``i + 1``, everything after the blocks, the head included, at ``L + 1``). No
    weight decay on parameters of norm layers, biases, other one-dimensional parameters (layer scales,
    q/v biases) and the backbone's ``no_weight_decay()`` names (class token, position embeddings). Relative
    position bias tables are decayed, as in the official FD code. Frozen parameters are left out. Parameters
    with equal settings share one optimizer group, whose ``param_names`` lists them. A table of the groups is
    logged when the optimizer is built.

    ``paramwise_cfg`` keys (all optional):

    - ``layer_decay_rate`` (float): the decay ``rate``. Defaults to 1 (no decay).
    - ``backbone`` (str): dotted attribute path of the module with ``get_layer_depth``, relative to the
      model. Defaults to ``'backbone'``.
    - ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult`` (float): weight-decay multipliers of
      norm-layer parameters, biases and 1-D parameters. Default to 0.
    - ``rel_pos_bias_decay_mult`` (float): weight-decay multiplier of RPB tables. Defaults to 1 (the official
      code); 0 exempts them, a departure (BEiT's and mmpretrain's BEiT fine-tuning choice).
    - ``custom_keys`` (dict): ``{substring: dict(lr_mult=..., decay_mult=...)}``; the longest substring of a
      parameter's full name wins. ``lr_mult`` multiplies the layer-decay scale; ``decay_mult`` replaces the
      rules above.

    With no ``optim_wrapper.type`` it builds ``fdclip_mm.CheckedOptimWrapper`` (mmengine's ``OptimWrapper`` and the
    non-finite-loss policy, :mod:`~fdclip_mm.engine.nonfinite_loss`).

    Example (mmpretrain, mmdet or mmseg config alike)::

        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
            constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        optim_wrapper_cfg.setdefault('type', DEFAULT_WRAPPER)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        groups = self.param_groups(model)
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = groups
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        print_log(self.format_table(groups), logger='current')
        return OPTIM_WRAPPERS.build(self.optim_wrapper_cfg.copy(), default_args=dict(optimizer=optimizer))

    # ------------------------------------------------------------------------------------ groups
    def find_backbone(self, model: nn.Module) -> Tuple[nn.Module, str]:
        """The backbone (found by ``paramwise_cfg['backbone']``) and its parameter-name prefix (``'backbone.'``)."""
        path = self.paramwise_cfg.get('backbone', 'backbone')
        module = model
        for attr in path.split('.') if path else []:
            module = getattr(module, attr, None)
            if module is None:
                raise AttributeError(f'{type(model).__name__} has no sub-module {path!r} '
                                     "(set paramwise_cfg['backbone'] to the backbone's attribute path)")
        layer_depth_function(module)
        return module, f'{path}.' if path else ''

    def decay_mult(self, name: str, param: nn.Parameter, module: nn.Module, no_decay: set) -> float:
        """Weight-decay multiplier of one parameter (before ``custom_keys``)."""
        cfg = self.paramwise_cfg
        if isinstance(module, NORM_TYPES):
            return cfg.get('norm_decay_mult', 0.)
        if name.endswith('.bias'):
            return cfg.get('bias_decay_mult', 0.)
        if name.endswith(RPB_TABLE_KEY):
            return cfg.get('rel_pos_bias_decay_mult', 1.)
        if param.ndim <= 1:
            return cfg.get('flat_decay_mult', 0.)
        if name in no_decay:
            return 0.
        return 1.

    def param_groups(self, model: nn.Module) -> List[dict]:
        """Optimizer parameter groups of ``model``'s trainable parameters."""
        backbone, prefix = self.find_backbone(model)
        get_layer_depth = layer_depth_function(backbone)
        rate = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        no_decay = {prefix + n for n in getattr(backbone, 'no_weight_decay', lambda: ())()}
        custom_keys: Dict[str, dict] = self.paramwise_cfg.get('custom_keys', {})
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        base_wd = self.base_wd or 0.
        owners = {
            f'{mod_name}.{p_name}' if mod_name else p_name: mod
            for mod_name, mod in model.named_modules()
            for p_name, _ in mod.named_parameters(recurse=False)
        }

        groups: 'OrderedDict[tuple, dict]' = OrderedDict()
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            depth, num_depths = get_layer_depth(name, prefix)
            scale = rate**(num_depths - 1 - depth)
            decay = self.decay_mult(name, param, owners[name], no_decay)
            key = next((k for k in sorted_keys if k in name), None)
            if key is not None:
                scale *= custom_keys[key].get('lr_mult', 1.)
                decay = custom_keys[key].get('decay_mult', decay)
            wd = base_wd * decay
            group_key = (depth, scale, wd)
            if group_key not in groups:
                groups[group_key] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * scale,
                    lr_scale=scale,
                    weight_decay=wd,
                    layer_depth=depth,
                    num_depths=num_depths,
                    group_name=f'depth_{depth}_{"decay" if wd else "no_decay"}' + (f'_{key}' if key else ''))
            groups[group_key]['params'].append(param)
            groups[group_key]['param_names'].append(name)
        return sorted(groups.values(), key=lambda g: (g['layer_depth'], g['lr_scale'], g['weight_decay']))

    # ------------------------------------------------------------------------------------ logging
    @staticmethod
    def name_pattern(names: List[str]) -> str:
        """A short pattern for a group's names: their common dotted prefix, ``*`` for the rest."""
        if len(names) == 1:
            return names[0]
        common = osp.commonprefix(names)
        common = common[:common.rfind('.') + 1]
        return f'{common}* ({names[0][len(common):]}, ...)' if common else f'{names[0]}, {names[1]}, ...'

    def format_table(self, groups: List[dict]) -> str:
        """The readable table of parameter groups logged at start."""
        rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        header = (f'{"group":<28} {"depth":>5} {"lr scale":>10} {"lr":>10} {"wd":>7} {"tensors":>7} '
                  f'{"values":>10}  names')
        lines = [
            f'Layer-wise lr decay {rate} (lr = base_lr * {rate} ** (num_depths - 1 - depth)), '
            f'base lr {self.base_lr}, base weight decay {self.base_wd}:', header
        ]
        for g in groups:
            numel = sum(p.numel() for p in g['params'])
            lines.append(f'{g["group_name"]:<28} {g["layer_depth"]:>5} {g["lr_scale"]:>10.4g} {g["lr"]:>10.4g} '
                         f'{g["weight_decay"]:>7.3g} {len(g["params"]):>7} {numel:>10}  '
                         f'{self.name_pattern(g["param_names"])}')
        return '\n'.join(lines)


def layer_depth_function(backbone: nn.Module) -> Callable[[str, str], Tuple[int, int]]:
    """``backbone.get_layer_depth``, or for a Swin without one (mmdet's, mmseg's) mmpretrain's Swin rule.

    Raises:
        TypeError: Neither applies.
    """
    if callable(getattr(backbone, 'get_layer_depth', None)):
        return backbone.get_layer_depth
    stages = getattr(backbone, 'stages', None)
    if stages is not None and all(hasattr(stage, 'blocks') for stage in stages):
        from mmpretrain.models import SwinTransformer
        return partial(SwinTransformer.get_layer_depth, SimpleNamespace(depths=[len(s.blocks) for s in stages]))
    raise TypeError(f'layer-wise lr decay needs {type(backbone).__name__}.get_layer_depth(name, prefix) '
                    '(or a Swin backbone with stages[i].blocks)')


def lr_and_wd_by_name(optimizer) -> Dict[str, Tuple[float, float]]:
    """``{parameter name: (lr, weight_decay)}`` of an optimizer built by this constructor.

    Args:
        optimizer: A ``torch.optim.Optimizer`` (or an ``OptimWrapper``'s ``.optimizer``).

    Returns:
        The current lr and weight decay of every named parameter.
    """
    return {name: (g['lr'], g['weight_decay']) for g in optimizer.param_groups for name in g['param_names']}


__all__ = ['LayerDecayOptimWrapperConstructor', 'lr_and_wd_by_name']
