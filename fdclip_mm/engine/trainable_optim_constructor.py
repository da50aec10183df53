"""mmengine's default optimizer constructor over trainable parameters only."""
from typing import List

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from fdclip_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Leaves frozen sub-modules (a distillation teacher) out of the optimizer.

    mmengine's constructor, given a ``paramwise_cfg``, adds every frozen parameter as an empty group and logs
    a warning for each (hundreds for a ViT teacher). Here a module with no trainable parameter is skipped
    whole; everything else is mmengine's behaviour.
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        if not any(p.requires_grad for p in module.parameters()):
            return
        super().add_params(params, module, prefix=prefix, **kwargs)
