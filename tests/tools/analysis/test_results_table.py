"""Results tables in the layout of the supplement's Tables 1-3, from fake mmengine metric files."""
import json
import os

import pytest

from ...helpers.scripts import load_script

results_table = load_script('tools/analysis/results_table.py')
LAYOUTS, collect_row, format_table = results_table.LAYOUTS, results_table.collect_row, results_table.format_table
read_metrics = results_table.read_metrics


def write_metrics(work_dir, timestamp, *records, test=False):
    run = work_dir / timestamp
    os.makedirs(run / 'vis_data', exist_ok=True)
    path = run / f'{timestamp}.json' if test else run / 'vis_data' / 'scalars.json'
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    return str(work_dir)


@pytest.fixture
def runs(tmp_path):
    """Work dirs of two methods (values of the supplement's Table 1), one per task."""
    out = {}
    methods = (('MAE', (83.6, 48.1, 0.465, 0.409, 0.383)), ('FD-MAE', (83.4, 47.9, 0.467, 0.412, 0.364)))
    for name, (top1, miou, box, mask, rmse) in methods:
        first, later = '20260101_000000', '20260102_000000'
        train = {'loss': 1.0, 'iter': 5, 'time': 1.0}
        dirs = [
            write_metrics(tmp_path / f'{name}_in1k', first, train, {
                'accuracy/top1': top1 - 1,
                'step': 1
            }, {
                'accuracy/top1': top1,
                'step': 2
            }),
            write_metrics(tmp_path / f'{name}_ade', first, {
                'mIoU': miou,
                'aAcc': 80.0,
                'step': 1
            }),
            write_metrics(tmp_path / f'{name}_coco', first, {
                'coco/bbox_mAP': box,
                'coco/segm_mAP': 0.1
            }),
            write_metrics(tmp_path / f'{name}_nyu', first, {
                'rmse': 0.5,
                'step': 1
            }),
        ]
        # a later test run overrides the validation metrics
        write_metrics(tmp_path / f'{name}_coco', later, {'coco/segm_mAP': mask}, test=True)
        write_metrics(tmp_path / f'{name}_nyu', later, {'rmse': rmse}, test=True)
        out[name] = dirs
    return out


def test_read_metrics_takes_the_last_value_and_later_runs(runs):
    metrics = read_metrics(runs['MAE'][0])
    assert metrics['accuracy/top1'] == 83.6
    assert read_metrics(runs['MAE'][2])['coco/segm_mAP'] == 0.409
    assert read_metrics(runs['MAE'][3])['rmse'] == 0.383


def test_table1_layout_with_a_delta_row(runs):
    columns, delta = LAYOUTS['table1']
    rows = [(name, collect_row(dirs, columns)) for name, dirs in runs.items()]
    assert format_table(
        rows, columns, baseline='MAE', delta=delta).splitlines() == [
            '| Method | IN-1K % | ADE20K mIoU | COCO AP<sub>box</sub> | COCO AP<sub>mask</sub> '
            '| NYUv2 RMSE (↓) |',
            '|---|---|---|---|---|---|',
            '| MAE | 83.6 | 48.1 | 46.5 | 40.9 | 0.383 |',
            '| FD-MAE | 83.4 | 47.9 | 46.7 | 41.2 | 0.364 |',
            '| Δ FD-MAE | ↓ 0.2 | ↓ 0.2 | ↑ 0.2 | ↑ 0.3 | ↓ 0.019 |',
        ]


def test_table3_inline_deltas_and_missing_metrics(runs):
    columns, delta = LAYOUTS['table3']
    rows = [('MAE', collect_row(runs['MAE'], columns)), ('FD-MAE', collect_row(runs['FD-MAE'][:2], columns))]
    lines = format_table(rows, columns, baseline='MAE', delta=delta).splitlines()
    assert lines[3] == '| FD-MAE | 83.4 (-0.2) | 47.9 (-0.2) | – | – | – |'


def test_table2_gpu_time_column_and_errors(runs):
    columns, delta = LAYOUTS['table2']
    rows = [('Full input + 100ep', collect_row(runs['MAE'], columns, gpu_hours=170.7))]
    table = format_table(rows, columns, delta=delta)
    assert table.splitlines()[0].startswith('| Method | GPU Time | IN-1K % |')
    assert table.splitlines()[2].startswith('| Full input + 100ep | 170.7h | 83.6 |')
    with pytest.raises(ValueError, match='baseline'):
        format_table(rows, columns, baseline='nope', delta='row')
