"""Mixed precision on CPU: mmengine's AMP wrapper without its accelerator check, in bfloat16."""
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from fdclip_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also runs on CPU, autocasting to bfloat16.

    mmengine's ``AmpOptimWrapper`` asserts that a GPU/NPU/MLU/MUSA is available. CPU autocast (through
    ``mmengine.runner.amp.autocast``) supports bfloat16 only; bfloat16 has float32's exponent range, so
    no loss scaling is done (a disabled ``torch.amp.GradScaler`` keeps the parent's code paths and its
    ``state_dict`` layout).

    Args:
        loss_scale: Accepted for config compatibility with ``AmpOptimWrapper`` and ignored.
        dtype: Autocast dtype; must be bfloat16. Defaults to ``'bfloat16'``.
        **kwargs: Passed to :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        OptimWrapper.__init__(self, **kwargs)  # skips AmpOptimWrapper's accelerator assertion
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype is not torch.bfloat16:
            raise ValueError(f'CPU autocast supports torch.bfloat16 only, got {dtype}')
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = dtype
