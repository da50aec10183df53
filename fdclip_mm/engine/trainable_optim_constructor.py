"""mmengine's default optimizer constructor over trainable parameters only."""
from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from fdclip_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS
from .nonfinite_loss import DEFAULT_WRAPPER

RPB_TABLE_KEY = 'relative_position_bias_table'


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Leaves frozen sub-modules (a distillation teacher) out of the optimizer.

    mmengine's constructor, given a ``paramwise_cfg``, adds every frozen parameter as an empty group and logs
    a warning for each (hundreds for a ViT teacher). Here a module with no trainable parameter is skipped
    whole; everything else is mmengine's behaviour, plus one named option:

    - ``paramwise_cfg.rel_pos_bias_decay_mult`` (float, default 1): weight-decay multiplier of relative
      position bias tables. The official FD code decays them (1); 0 exempts them, a departure (BEiT's choice
      in fine-tuning). Same key as :class:`LayerDecayOptimWrapperConstructor`.
    - with no ``optim_wrapper.type``: ``fdclip_mm.CheckedOptimWrapper`` (mmengine's ``OptimWrapper`` and the
      non-finite-loss policy, :mod:`~fdclip_mm.engine.nonfinite_loss`) rather than mmengine's ``OptimWrapper``.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        optim_wrapper_cfg.setdefault('type', DEFAULT_WRAPPER)
        paramwise_cfg = dict(paramwise_cfg or {})
        rpb_mult = paramwise_cfg.pop('rel_pos_bias_decay_mult', None)
        if rpb_mult is not None:
            custom_keys = dict(paramwise_cfg.get('custom_keys', {}))
            custom_keys.setdefault(RPB_TABLE_KEY, dict(decay_mult=float(rpb_mult)))
            paramwise_cfg['custom_keys'] = custom_keys
        super().__init__(optim_wrapper_cfg, paramwise_cfg or None)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        if not any(p.requires_grad for p in module.parameters()):
            return
        super().add_params(params, module, prefix=prefix, **kwargs)
