"""Cost accounting against the supplement's appendix A, and measurement from a run's logs."""
import json
import os

import pytest
from mmengine.config import Config

from fdclip_mm.analysis.training_cost import (CLIP_PRETRAIN_IMAGES, DistillationCost, format_cost, format_count,
                                              measure_run, paper_cost)
from fdclip_mm.analysis.training_cost_config import cost_from_config


def test_paper_numbers_of_appendix_a():
    cost = paper_cost()
    assert cost.images_seen == pytest.approx(384e6)  # 300 x 1.28M
    assert CLIP_PRETRAIN_IMAGES == pytest.approx(12.8e9)  # 32 x 400M
    assert cost.fraction == pytest.approx(0.03)
    assert 'additional cost: 384M/12.8B = 3.0%' in format_cost(cost)
    assert format_count(1234) == '1.234K'
    assert DistillationCost(10, 100).fraction is None


def test_config_of_the_paper_counts_imagenet_and_clip(tmp_path):
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            train_cfg=dict(max_epochs=300),
            model=dict(
                type='fdclip_mm.FeatureDistiller',
                teacher=dict(type='BackboneTeacher', reader='clip', checkpoint='x.pt')),
            train_dataloader=dict(batch_size=128, dataset=dict(type='ImageNet', data_root=str(tmp_path / 'none')))))
    cost = cost_from_config(cfg)
    assert cost.images_per_epoch == 1_281_167
    assert cost.fraction == pytest.approx(300 * 1_281_167 / 12.8e9)
    assert cost_from_config(cfg, images_per_epoch=1.28e6).fraction == pytest.approx(0.03)


def write_run(work_dir, world_size=2, cuda=True):
    run = work_dir / '20260101_000000'
    os.makedirs(run / 'vis_data')
    records = [
        dict(lr=1e-3, time=0.5, iter=10, epoch=1, step=10),
        dict(lr=1e-3, time=0.25, iter=20, epoch=2, step=20), {
            'distill/loss': 0.2,
            'time': 9.0,
            'step': 2
        }
    ]  # a validation record
    (run / 'vis_data' / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    (run / '20260101_000000.log').write_text(f'    CUDA available: {cuda}\n    GPU number: {world_size}\n')


def test_measured_throughput_and_device_hours(tmp_path):
    write_run(tmp_path)
    run = measure_run(str(tmp_path), batch_size=8)
    assert run.iterations == 20 and run.world_size == 2 and run.device == 'GPU'
    assert run.train_seconds == pytest.approx(10 * 0.5 + 10 * 0.25)  # validation time not counted
    assert run.images_seen == 20 * 8 * 2
    assert run.throughput == pytest.approx(320 / 7.5)
    assert run.device_hours == pytest.approx(7.5 * 2 / 3600)
    assert 'GPU-hours' in format_cost(paper_cost(), run)
