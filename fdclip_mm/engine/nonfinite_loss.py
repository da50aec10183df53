"""What an optimizer step does with a NaN / inf loss: stop naming the iteration, or skip the update.

mmengine's ``OptimWrapper.update_params`` steps on whatever loss it is given, so a NaN loss writes NaN into
every weight and the run goes on, reporting nothing. The registered wrappers :class:`CheckedOptimWrapper`,
:class:`CheckedAmpOptimWrapper` (and our ``CPUAmpOptimWrapper``) check the loss first, on every rank alike (one
all-reduce of a flag), and then, by their ``nonfinite_loss`` argument, either raise or skip:

- ``'raise'`` (default): ``FloatingPointError`` naming the iteration, before any gradient is computed;
- ``'skip'``: the backward of the zeroed loss still runs, so DDP's and FSDP's gradient reductions complete on
  every rank as in any step, then the gradients are cleared: no parameter and no optimizer state moves. The
  step is counted (``skipped_nonfinite_steps``) and logged; the iteration's NaN loss is logged as it was.

A config names one: ``optim_wrapper = dict(type='fdclip_mm.CheckedOptimWrapper', nonfinite_loss='skip', ...)``;
our optimizer wrapper constructors build :class:`CheckedOptimWrapper` when the config names no ``type``.
mmengine's own wrappers, named as such, step on any loss. With gradient accumulation, a skipped step also drops
the gradients accumulated earlier in its window.
"""
import logging
from typing import Dict, Optional

import torch
import torch.distributed as torch_dist
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from fdclip_mm.registry import OPTIM_WRAPPERS

NONFINITE_LOSS_MODES = ('raise', 'skip')
#: The wrapper our optimizer wrapper constructors build when the config names none.
DEFAULT_WRAPPER = 'fdclip_mm.CheckedOptimWrapper'


class NonFiniteLossPolicy:
    """Mixin placed before an mmengine optimizer wrapper class; see the module doc.

    Args:
        nonfinite_loss: ``'raise'`` or ``'skip'``.
        *args, **kwargs: The wrapper's.
    """

    def __init__(self, *args, nonfinite_loss: str = 'raise', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.set_nonfinite_loss(nonfinite_loss)

    def set_nonfinite_loss(self, mode: str) -> None:
        """Sets the policy: ``'raise'`` or ``'skip'``.

        Raises:
            ValueError: An unknown ``mode``.
        """
        if mode not in NONFINITE_LOSS_MODES:
            raise ValueError(f'optim_wrapper.nonfinite_loss must be one of {NONFINITE_LOSS_MODES}, got {mode!r}')
        self.nonfinite_loss = mode
        self.skipped_nonfinite_steps = 0

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        if finite_on_every_rank(loss):
            return super().update_params(loss, step_kwargs=step_kwargs, zero_kwargs=zero_kwargs)
        if self.nonfinite_loss == 'raise':
            raise FloatingPointError(f'non-finite loss at {iteration_name()} (this rank: {loss.item()}); stopping. '
                                     "Set optim_wrapper.nonfinite_loss='skip' to skip such steps instead.")
        self.backward(torch.nan_to_num(loss, nan=0., posinf=0., neginf=0.) * 0.)
        self.zero_grad(**(zero_kwargs or {}))
        self.skipped_nonfinite_steps += 1
        print_log(
            f'skipped the update of {iteration_name()}: non-finite loss {loss.item()} '
            f'({self.skipped_nonfinite_steps} step(s) skipped so far)',
            logger='current',
            level=logging.WARNING)


@OPTIM_WRAPPERS.register_module()
class CheckedOptimWrapper(NonFiniteLossPolicy, OptimWrapper):
    """mmengine's ``OptimWrapper`` with the non-finite-loss policy (``nonfinite_loss``, see the module doc)."""


@OPTIM_WRAPPERS.register_module()
class CheckedAmpOptimWrapper(NonFiniteLossPolicy, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` with the non-finite-loss policy (``nonfinite_loss``, see the module doc)."""


def finite_on_every_rank(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on this rank and on every other (all ranks then raise or skip together)."""
    finite = torch.isfinite(loss.detach()).all().to(torch.int32).reshape(1)
    if torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1:
        torch_dist.all_reduce(finite, op=torch_dist.ReduceOp.MIN)
    return bool(finite.item())


def iteration_name() -> str:
    """The current training iteration as the logs count it (1-based), from mmengine's message hub."""
    index = MessageHub.get_current_instance().get_info('iter')
    if index is None:
        return 'an unknown iteration'
    return f'training iteration {index + 1} (runner.iter {index})'
