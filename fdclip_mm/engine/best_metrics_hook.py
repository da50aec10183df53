"""Keeps the best value of several validation metrics, e.g. of the raw and of the EMA weights."""
from typing import Dict, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log

from fdclip_mm.registry import HOOKS


@HOOKS.register_module()
class BestMetricsHook(Hook):
    """Records the best value so far of each metric in ``keys`` after every validation.

    With mmpretrain's ``EMAHook(evaluate_on_ema=True, evaluate_on_origin=True)`` each validation measures
    the EMA weights (the ``metrics`` of the epoch, e.g. ``accuracy/top1``) and then the raw weights (put in
    the message hub as ``val/accuracy/top1_origin``). mmengine's ``CheckpointHook(save_best=...)`` follows
    one metric only; this hook follows all of them. The bests are written to the message hub as scalars
    ``val/best/<key>`` (so the logger prints them with the epoch's metrics and they reach the json log)
    and as runtime info ``best/<key>`` (saved in checkpoints).

    Its priority (55) puts it after ``EMAHook`` (NORMAL, 50), which adds the ``*_origin`` metrics, and
    before ``LoggerHook`` (BELOW_NORMAL, 60), which prints them.

    Args:
        keys: Metric names as the evaluator reports them (``*_origin`` for the raw weights under EMA).
        rule: ``'greater'`` or ``'less'`` (the better direction), for all keys.
    """
    priority = 55

    def __init__(self, keys: Sequence[str] = ('accuracy/top1', 'accuracy/top1_origin'), rule: str = 'greater') -> None:
        if rule not in ('greater', 'less'):
            raise ValueError(f"rule must be 'greater' or 'less', got {rule!r}")
        self.keys = tuple(keys)
        self.rule = rule
        self.best: Dict[str, float] = {}

    def _better(self, value: float, best: Optional[float]) -> bool:
        if best is None:
            return True
        return value > best if self.rule == 'greater' else value < best

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        hub = runner.message_hub
        for key in self.keys:
            if metrics is not None and key in metrics:
                value = float(metrics[key])
            elif f'val/{key}' in hub.log_scalars:
                value = float(hub.get_scalar(f'val/{key}').current())
            else:
                continue
            best = hub.get_info(f'best/{key}')
            if self._better(value, best):
                best = value
                hub.update_info(f'best/{key}', value)
            self.best[key] = best
            hub.update_scalar(f'val/best/{key}', best)
        if self.best:
            print_log('best so far: ' + ', '.join(f'{k}={v:.4f}' for k, v in self.best.items()), logger='current')
