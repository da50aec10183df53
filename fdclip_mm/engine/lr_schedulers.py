"""Warm-up and cosine schedules whose start and floor are one absolute lr for every group, as in timm.

The official FD fine-tuning code (timm 0.4.12's ``CosineLRScheduler``) warms every parameter group up from
the same absolute ``WARMUP_LR`` and anneals every group to the same absolute ``MIN_LR``, whatever the group's
layer-decay scale; both scale linearly with the batch, like the peak lr. mmengine's ``LinearLR`` and
``CosineAnnealingLR`` express them as factors of each group's own lr (``eta_min_ratio``) or as a constant that
``auto_scale_lr`` does not scale (``eta_min``). Here both are ratios of the run's peak lr (a group's
initial lr divided by its ``lr_scale``, 1 without layer decay), so ``--auto-scale-lr`` scales them with it.
"""
import math
from typing import List

from mmengine.optim.scheduler import LinearLR
from mmengine.optim.scheduler.lr_scheduler import CosineAnnealingLR

from fdclip_mm.registry import PARAM_SCHEDULERS


def peak_lrs(scheduler) -> List[float]:
    """The run's peak lr as seen from each group: its initial lr over its layer-decay ``lr_scale``."""
    return [
        base / group.get('lr_scale', 1.) for base, group in zip(scheduler.base_values, scheduler.optimizer.param_groups)
    ]


@PARAM_SCHEDULERS.register_module()
class TimmLinearWarmupLR(LinearLR):
    """Linear warm-up of every group from ``warmup_lr_ratio x peak lr`` to its own initial lr.

    Args:
        warmup_lr_ratio: The common start lr as a fraction of the peak lr (official B/16 fine-tuning:
            2.5e-7 / 1.25e-3 = 2e-4).
        **kwargs: ``optimizer``, ``begin``, ``end``, ``by_epoch``, ... as for mmengine's ``LinearLR``.
    """

    def __init__(self, optimizer, warmup_lr_ratio: float, **kwargs) -> None:
        if not warmup_lr_ratio > 0:
            raise ValueError(f'warmup_lr_ratio must be positive, got {warmup_lr_ratio}')
        self.warmup_lr_ratio = warmup_lr_ratio
        super().__init__(optimizer, start_factor=1.0, end_factor=1.0, **kwargs)

    def _get_value(self) -> List[float]:
        # timm: warmup_lr + t * (base - warmup_lr) / warmup_t, the peak reached at t = warmup_t (the first step
        # after this scheduler's range); mmengine's LinearLR reaches it one step earlier.
        progress = min(self.last_step / (self.total_iters + 1), 1.0)
        return [
            start + (base - start) * progress
            for start, base in zip((self.warmup_lr_ratio * p for p in peak_lrs(self)), self.base_values)
        ]


@PARAM_SCHEDULERS.register_module()
class TimmCosineAnnealingLR(CosineAnnealingLR):
    """Cosine annealing of every group from its initial lr to ``min_lr_ratio x peak lr`` (one floor for all).

    Args:
        min_lr_ratio: The common floor as a fraction of the peak lr (official B/16 fine-tuning: 2e-4).
        **kwargs: ``optimizer``, ``T_max``, ``begin``, ``end``, ``by_epoch``, ... as for ``CosineAnnealingLR``.
    """

    def __init__(self, optimizer, min_lr_ratio: float, **kwargs) -> None:
        if min_lr_ratio < 0:
            raise ValueError(f'min_lr_ratio must be >= 0, got {min_lr_ratio}')
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, eta_min=0., **kwargs)

    def _get_value(self) -> List[float]:
        cosine = (1 + math.cos(math.pi * min(self.last_step, self.T_max) / self.T_max)) / 2
        return [
            floor + (base - floor) * cosine
            for floor, base in zip((self.min_lr_ratio * p for p in peak_lrs(self)), self.base_values)
        ]
