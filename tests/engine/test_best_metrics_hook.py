"""BestMetricsHook keeps the best of several metrics, from the epoch's metrics or the message hub."""
from types import SimpleNamespace

import pytest
from mmengine.logging import MessageHub

from fdclip_mm.engine.best_metrics_hook import BestMetricsHook


def run_epochs(hook, epochs):
    hub = MessageHub.get_instance('test_best_metrics_hook')
    for key in list(hub.runtime_info):
        hub.pop_info(key)
    runner = SimpleNamespace(message_hub=hub)
    for metrics, origin in epochs:
        hub.update_scalar('val/accuracy/top1_origin', origin)  # what mmpretrain's EMAHook adds
        hook.after_val_epoch(runner, metrics)
    return hub


def test_best_of_ema_and_raw_weights():
    hook = BestMetricsHook(keys=('accuracy/top1', 'accuracy/top1_origin'))
    hub = run_epochs(hook, [({
        'accuracy/top1': 50.
    }, 60.), ({
        'accuracy/top1': 70.
    }, 55.), ({
        'accuracy/top1': 65.
    }, 58.)])
    assert hub.get_info('best/accuracy/top1') == 70. and hub.get_info('best/accuracy/top1_origin') == 60.
    assert hub.get_scalar('val/best/accuracy/top1').current() == 70.
    assert hook.best == {'accuracy/top1': 70., 'accuracy/top1_origin': 60.}


def test_lower_is_better_and_missing_keys():
    hook = BestMetricsHook(keys=('rmse', 'absent'), rule='less')
    hub = run_epochs(hook, [({'rmse': 0.5}, 0.), ({'rmse': 0.4}, 0.), ({'rmse': 0.45}, 0.)])
    assert hub.get_info('best/rmse') == 0.4 and hub.get_info('best/absent') is None
    with pytest.raises(ValueError, match='rule'):
        BestMetricsHook(rule='max')
