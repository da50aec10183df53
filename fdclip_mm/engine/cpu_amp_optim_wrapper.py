"""Mixed precision on CPU: mmengine's AMP wrapper without its accelerator check, bf16 where the CPU has it."""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from fdclip_mm.precision import AUTO, resolve_bf16
from fdclip_mm.registry import OPTIM_WRAPPERS
from .nonfinite_loss import NonFiniteLossPolicy


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(NonFiniteLossPolicy, AmpOptimWrapper):
    """``AmpOptimWrapper`` that also runs on CPU: bfloat16 autocast where the CPU runs bf16 natively, with the
    non-finite-loss policy (:mod:`~fdclip_mm.engine.nonfinite_loss`).

    mmengine's ``AmpOptimWrapper`` asserts that a GPU/NPU/MLU/MUSA is available. CPU autocast supports
    bfloat16 only, and only CPUs with AVX512-BF16 or AMX run it fast; elsewhere (e.g. AVX2) bf16 products
    are emulated and ~100x slower than float32. bfloat16 has float32's exponent range, so no loss scaling
    is done (a disabled ``torch.amp.GradScaler`` keeps the parent's code paths and ``state_dict`` layout).

    Args:
        loss_scale: Accepted for config compatibility with ``AmpOptimWrapper`` and ignored.
        dtype: ``'auto'`` (default): bfloat16 autocast on a CPU with native bf16, plain float32 (no
            autocast) elsewhere; the choice is logged once. ``'bfloat16'``: always autocast (warns on a CPU
            without native bf16). Other dtypes are refused.
        nonfinite_loss: ``'raise'`` (default) or ``'skip'``, see :mod:`~fdclip_mm.engine.nonfinite_loss`.
        **kwargs: Passed to :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = AUTO,
                 nonfinite_loss: str = 'raise',
                 **kwargs) -> None:
        OptimWrapper.__init__(self, **kwargs)  # skips AmpOptimWrapper's accelerator assertion
        self.set_nonfinite_loss(nonfinite_loss)
        if dtype is None:
            dtype = AUTO
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace('torch.', '')
        if dtype not in (AUTO, 'bfloat16'):
            raise ValueError(f"CPU autocast supports bfloat16 only ('auto' or 'bfloat16'), got {dtype!r}")
        resolved = resolve_bf16(dtype, 'CPU AMP dtype', device_type='cpu')
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16 if resolved == 'bfloat16' else None

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Autocasts to bfloat16, or runs plain float32 where ``'auto'`` chose it."""
        if self.cast_dtype is None:
            with OptimWrapper.optim_context(self, model):
                yield
        else:
            with super().optim_context(model):
                yield
