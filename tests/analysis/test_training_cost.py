"""Cost accounting against the supplement's appendix A, and measurement from a run's logs."""
import json
import os

import pytest

from fdclip_mm.analysis.training_cost import CLIP_PRETRAIN_IMAGES, DistillationCost, measure_run, paper_cost


def test_paper_numbers_of_appendix_a():
    cost = paper_cost()
    assert cost.images_seen == pytest.approx(384e6)  # 300 x 1.28M
    assert CLIP_PRETRAIN_IMAGES == pytest.approx(12.8e9)  # 32 x 400M
    assert cost.fraction == pytest.approx(0.03)
    assert DistillationCost(10, 100).fraction is None


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
