"""timm-style warm-up and cosine: one absolute start and floor for every layer-decay group."""
import math

import pytest

from ..helpers.schedules import scheduled_lrs

PEAK, RATIO = 1e-3, 1e-2
GROUPS = [dict(lr=PEAK, lr_scale=1.0), dict(lr=PEAK * 0.5**3, lr_scale=0.5**3)]
SCHEDULE = [
    dict(type='fdclip_mm.TimmLinearWarmupLR', warmup_lr_ratio=RATIO, by_epoch=False, begin=0, end=10),
    dict(type='fdclip_mm.TimmCosineAnnealingLR', T_max=20, min_lr_ratio=RATIO, by_epoch=False, begin=10, end=30),
]


def test_warmup_and_cosine_share_one_absolute_start_and_floor():
    lrs = scheduled_lrs(SCHEDULE, GROUPS, 1, [0, 5, 10, 20, 29])
    start, mid_warmup, peak, mid_cosine, last = lrs
    floor = RATIO * PEAK
    assert start == pytest.approx([floor, floor])  # the same for both groups, as timm
    assert mid_warmup == pytest.approx([floor + (g['lr'] - floor) * 0.5 for g in GROUPS])
    assert peak == pytest.approx([g['lr'] for g in GROUPS])
    assert mid_cosine == pytest.approx([floor + (g['lr'] - floor) * 0.5 for g in GROUPS])
    cosine = (1 + math.cos(math.pi * 19 / 20)) / 2
    assert last == pytest.approx([floor + (g['lr'] - floor) * cosine for g in GROUPS])


def test_both_scale_with_auto_scale_lr():
    lrs = scheduled_lrs(SCHEDULE, GROUPS, 1, [0, 10], batch_ratio=4.0)
    assert lrs[0] == pytest.approx([4 * RATIO * PEAK] * 2)
    assert lrs[1] == pytest.approx([4 * g['lr'] for g in GROUPS])


def test_epoch_based_configs_convert_to_iterations():
    schedule = [dict(s, by_epoch=True, convert_to_iter_based=True) for s in SCHEDULE]
    lrs = scheduled_lrs(schedule, GROUPS[:1], 4, [0, 40])
    assert lrs == [pytest.approx([RATIO * PEAK]), pytest.approx([PEAK])]


def test_bad_ratios_are_refused():
    with pytest.raises(ValueError, match='warmup_lr_ratio'):
        scheduled_lrs([dict(SCHEDULE[0], warmup_lr_ratio=0.)], GROUPS, 1, [0])
    with pytest.raises(ValueError, match='min_lr_ratio'):
        scheduled_lrs([dict(SCHEDULE[1], min_lr_ratio=-1.)], GROUPS, 1, [0])
