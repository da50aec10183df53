"""Metrics of finished work_dirs -> Markdown tables in the layout of the supplement's Tables 1-3."""
import glob
import json
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Column:
    """A table column: header, metric keys that fill it (first found wins), scale, direction, digits."""
    header: str
    keys: Tuple[str, ...]
    scale: float = 1.0
    lower_is_better: bool = False
    digits: int = 1
    suffix: str = ''


COLUMNS = {
    'gpu_time': Column('GPU Time', ('gpu_hours', ), digits=1, lower_is_better=True, suffix='h'),
    'in1k': Column('IN-1K %', ('accuracy/top1', )),
    'ade20k': Column('ADE20K mIoU', ('mIoU', )),
    'coco_box': Column('COCO AP<sub>box</sub>', ('coco/bbox_mAP', ), scale=100.0),
    'coco_mask': Column('COCO AP<sub>mask</sub>', ('coco/segm_mAP', ), scale=100.0),
    'nyuv2': Column('NYUv2 RMSE (↓)', ('rmse', ), lower_is_better=True, digits=3),
}
# Table 1 (FD-MAE): a delta row; Table 2 (masked input): a GPU-time column, no deltas; Table 3: inline deltas.
LAYOUTS = {
    'table1': (('in1k', 'ade20k', 'coco_box', 'coco_mask', 'nyuv2'), 'row'),
    'table2': (('gpu_time', 'in1k', 'ade20k', 'coco_box', 'coco_mask', 'nyuv2'), None),
    'table3': (('in1k', 'ade20k', 'coco_box', 'coco_mask', 'nyuv2'), 'inline'),
}


def read_metrics(work_dir: str) -> Dict[str, float]:
    """Last value of every scalar logged in ``work_dir``'s runs (mmengine's JSON logs), newest run last.

    Reads ``<timestamp>/vis_data/scalars.json`` (training and validation) and ``<timestamp>/<timestamp>.json``
    (what ``tools/test.py`` writes), in timestamp order, so a later test overrides an earlier validation.
    """
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    files += [
        p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
        if osp.basename(p) == osp.basename(osp.dirname(p)) + '.json'
    ]
    metrics: Dict[str, float] = {}
    for path in sorted(files, key=lambda p: (osp.basename(osp.dirname(p.replace('/vis_data', ''))), p)):
        with open(path) as f:
            for line in f:
                if line.strip():
                    metrics.update({
                        k: float(v)
                        for k, v in json.loads(line).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    })
    return metrics


def row_values(metrics: Dict[str, float], columns: Sequence[str]) -> Dict[str, Optional[float]]:
    """Column name -> scaled value (None when no metric of the column was logged)."""
    values = {}
    for name in columns:
        column = COLUMNS[name]
        key = next((k for k in column.keys if k in metrics), None)
        values[name] = None if key is None else metrics[key] * column.scale
    return values


def collect_row(work_dirs: Sequence[str],
                columns: Sequence[str],
                gpu_hours: Optional[float] = None) -> Dict[str, Optional[float]]:
    """Merges the metrics of several work dirs (one per task) into one table row."""
    metrics: Dict[str, float] = {}
    for work_dir in work_dirs:
        metrics.update(read_metrics(work_dir))
    if gpu_hours is not None:
        metrics['gpu_hours'] = gpu_hours
    return row_values(metrics, columns)


def _fmt(value: Optional[float], column: Column) -> str:
    return '–' if value is None else f'{value:.{column.digits}f}{column.suffix}'


def _delta(value: Optional[float], base: Optional[float], column: Column, inline: bool) -> str:
    if value is None or base is None:
        return '–'
    diff = round(value - base, column.digits)
    if inline:
        return f'{diff:+.{column.digits}f}'
    arrow = '↑' if diff > 0 else '↓' if diff < 0 else '='
    return f'{arrow} {abs(diff):.{column.digits}f}'


def format_table(rows: List[Tuple[str, Dict[str, Optional[float]]]],
                 columns: Sequence[str],
                 baseline: Optional[str] = None,
                 delta: Optional[str] = 'row') -> str:
    """A Markdown table: ``Method`` then one column per metric.

    Args:
        rows: (method name, column -> value) in display order.
        columns: Column names (keys of :data:`COLUMNS`).
        baseline: Name of the row deltas are taken against (needed for ``delta``).
        delta: ``'row'`` adds a ``Δ <name>`` row with ↑/↓ under every other row (Table 1); ``'inline'``
            writes ``value (+d)`` (Table 3); None writes no delta (Table 2).

    Raises:
        ValueError: if ``baseline`` is not a row name while deltas are asked for.
    """
    names = [name for name, _ in rows]
    if delta is not None and baseline not in names:
        raise ValueError(f'baseline {baseline!r} is not one of the rows {names}')
    base = dict(rows)[baseline] if delta is not None else {}
    cols = [COLUMNS[c] for c in columns]
    lines = ['| Method | ' + ' | '.join(c.header for c in cols) + ' |', '|---' * (len(cols) + 1) + '|']
    for name, values in rows:
        cells = [_fmt(values.get(c), col) for c, col in zip(columns, cols)]
        if delta == 'inline' and name != baseline:
            cells = [
                f'{cell} ({_delta(values.get(c), base.get(c), col, True)})' if values.get(c) is not None else cell
                for cell, c, col in zip(cells, columns, cols)
            ]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
        if delta == 'row' and name != baseline:
            diffs = [_delta(values.get(c), base.get(c), col, False) for c, col in zip(columns, cols)]
            lines.append(f'| Δ {name} | ' + ' | '.join(diffs) + ' |')
    return '\n'.join(lines)
