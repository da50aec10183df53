"""DDP wrapper whose training step is the wrapped model's own guarded one (non-finite loss handling)."""
from typing import Dict, Union

import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper

from fdclip_mm.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class GuardedDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that lets the model decide about non-finite losses.

    mmengine's wrapper runs forward, ``parse_losses`` and ``update_params`` itself, so a model cannot skip
    an update. Models with ``guarded_train_step(data, optim_wrapper, forward_module)`` (the
    ``FeatureDistiller``) run their own step with this wrapper as ``forward_module`` (its forward keeps the
    gradient synchronisation); other models get mmengine's step unchanged.

    Example::

        model_wrapper_cfg = dict(type='fdclip_mm.GuardedDistributedDataParallel', broadcast_buffers=False,
                                 find_unused_parameters=False)
    """

    def train_step(self, data: Union[dict, tuple, list], optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        guarded_step = getattr(self.module, 'guarded_train_step', None)
        if guarded_step is None:
            return super().train_step(data, optim_wrapper)
        return guarded_step(data, optim_wrapper, self)
