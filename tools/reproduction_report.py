"""``REPORT.md`` of a small-scale reproduction (``tools/reproduce.py``), read back from its logs only.

Every number in the report is written as ``[value](path)``, ``path`` (relative to the work dir) being the log
or JSON file the value was read from; means and standard deviations are computed from the linked per-seed
values of the same row. Missing stages show as "not run".
"""
import glob
import json
import os.path as osp
import platform
import statistics
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

Value = Tuple[float, str]  # (number, source file relative to the work dir)

ROWS = (('scratch', '4-layer FDViT, scratch (random init)'), ('fd', '4-layer FDViT, FD (distilled from DINOv2)'),
        ('teacher', 'DINOv2 ViT-S/14 itself (the teacher)'), ('fd-s', 'FDViT-S/14 (matched), FD (distilled)'),
        ('scratch-s', 'FDViT-S/14 (matched), scratch (random init)'))
FROZEN_ROWS = (('frozen_features.json', 'random init'), ('frozen_features.json', 'FD student'),
               ('frozen_features_matched.json', 'random init S'), ('frozen_features_matched.json', 'FD-S student'),
               ('frozen_features.json', 'DINOv2 teacher'))
ABLATIONS = (('main', 'shared RPB, whitened targets, full input (main)'), ('no-whitening', 'no whitening'),
             ('ape', 'absolute position embedding'), ('rpb', 'per-layer RPB'), ('mask75', '25% input (masked)'))
ANALYSED = ('DINOv2 teacher', 'FD student', 'random init', 'FD fine-tuned', 'scratch fine-tuned')


def _newest(pattern: str) -> Optional[str]:
    found = sorted(glob.glob(pattern))
    return found[-1] if found else None


def _scalars(run_dir: str) -> List[dict]:
    """Records of the newest run's ``vis_data/scalars.json`` (mmengine's log of logged scalars)."""
    path = _newest(osp.join(run_dir, '*', 'vis_data', 'scalars.json'))
    if path is None:
        return []
    with open(path) as f:
        return [dict(json.loads(line), _file=path) for line in f if line.strip()]


def last_scalar(run_dir: str, key: str) -> Optional[Tuple[float, str]]:
    """(last logged value of ``key``, its scalars.json) of a training run."""
    records = [r for r in _scalars(run_dir) if key in r]
    return (float(records[-1][key]), records[-1]['_file']) if records else None


def test_top1(run_dir: str) -> Optional[Tuple[float, str]]:
    """(test top-1, the metrics JSON mmengine wrote for ``tools/test.py``) of a fine-tuning run."""
    marker = osp.join(run_dir, 'test', 'metrics_file')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        path = osp.join(run_dir, 'test', f.read().strip())
    with open(path) as f:
        return float(json.load(f)['accuracy/top1']), path


def _link(value: Optional[Tuple[float, str]], root: str, digits: int = 2) -> str:
    if value is None:
        return 'not run'
    return f'[{value[0]:.{digits}f}]({osp.relpath(value[1], root)})'


def _mean_std(values: List[float]) -> str:
    if not values:
        return 'not run'
    if len(values) == 1:
        return f'{values[0]:.2f} (1 seed)'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)} seeds)'


def _machine() -> str:
    import torch

    from fdclip_mm.precision import describe_cpu
    cpu = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    import os
    return f'{cpu} ({describe_cpu()}), {os.cpu_count()} cores, torch {torch.__version__}'


def chosen_lr(root: str, row: str) -> Optional[dict]:
    """``finetune/<row>/chosen_lr.json`` (tools/reproduce.py's lr choice on the validation split), if written."""
    path = osp.join(root, 'finetune', row, 'chosen_lr.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return dict(json.load(f), _file=path)


def _chosen_lr_name(root: str, row: str) -> Optional[str]:
    """The grid name (folder) of ``row``'s chosen lr, e.g. ``lr1e-03``, if chosen."""
    choice = chosen_lr(root, row)
    if choice is None:
        return None
    return next(name for name, entry in choice['grid'].items() if entry['lr'] == choice['chosen'])


def _runs(root: str, row: str, lr_name: Optional[str]) -> List[str]:
    """The seed folders of ``row`` at the lr named ``lr_name`` (none if no lr was chosen)."""
    return sorted(glob.glob(osp.join(root, 'finetune', row, lr_name, 'seed*'))) if lr_name else []


def grid_table(root: str, lr_grid: List[str]) -> List[str]:
    lines = [
        '| model | ' + ' | '.join(lr_grid) + ' | chosen |',
        '|---' * (len(lr_grid) + 2) + '|',
    ]
    for row, label in ROWS:
        choice = chosen_lr(root, row)
        cells = []
        for name in lr_grid:
            entry = choice['grid'].get(name) if choice else None
            source = osp.join(root, entry['source']) if entry else None
            cells.append(_link((entry['val_top1'], source), root) if entry else 'not run')
        chosen = 'not run' if choice is None else \
            f'[{choice["chosen"]:.0e}]({osp.relpath(choice["_file"], root)})'
        lines.append(f'| {label} | ' + ' | '.join(cells) + f' | {chosen} |')
    return lines


def finetune_table(root: str) -> List[str]:
    lines = [
        '| model | fine-tuned top-1 on the 10k test images, mean ± std | per seed (test) | per seed '
        '(validation, 2k held-out train images) |', '|---|---|---|---|'
    ]
    for row, label in ROWS:
        runs = _runs(root, row, _chosen_lr_name(root, row))
        tests = [test_top1(run) for run in runs]
        vals = [last_scalar(run, 'accuracy/top1') for run in runs]
        done = [t for t in tests if t is not None]
        lines.append(f'| {label} | {_mean_std([t[0] for t in done])} | '
                     f'{", ".join(_link(t, root) for t in tests) or "not run"} | '
                     f'{", ".join(_link(v, root) for v in vals) or "not run"} |')
    return lines


def frozen_table(root: str) -> List[str]:
    lines = ['| model | 20-NN top-1 (test) | linear probe top-1 (test) |', '|---|---|---|']
    results = {}  # file name: its results, each file read once
    for name in {name for name, _ in FROZEN_ROWS}:
        path = osp.join(root, 'frozen', name)
        if osp.isfile(path):
            with open(path) as f:
                results[name] = json.load(f)
    for name, label in FROZEN_ROWS:
        path = osp.join(root, 'frozen', name)
        row = results.get(name, {}).get(label)
        knn = (row['knn_top1'], path) if row else None
        linear = (row['linear_top1'], path) if row else None
        lines.append(f'| {label} | {_link(knn, root)} | {_link(linear, root)} |')
    return lines


def ablation_table(root: str) -> List[str]:
    lines = [
        '| distillation variant | final training loss | held-out feature error | fine-tuned top-1 (test, '
        'seed 0, the FD row\'s lr) |', '|---|---|---|---|'
    ]
    fd_lr = _chosen_lr_name(root, 'fd')  # every ablation is fine-tuned at the FD row's lr
    for variant, label in ABLATIONS:
        run = osp.join(root, 'distill', variant)
        runs = _runs(root, 'fd' if variant == 'main' else f'fd-{variant}', fd_lr)
        finetune = runs[0] if runs else osp.join(root, 'missing')
        lines.append(f'| {label} | {_link(last_scalar(run, "loss"), root, 4)} | '
                     f'{_link(last_scalar(run, "distill/feature_error"), root, 4)} | '
                     f'{_link(test_top1(finetune), root)} |')
    return lines


def attention_table(root: str) -> List[str]:
    path = osp.join(root, 'analysis', 'attention_distance.json')
    if not osp.isfile(path):
        return ['not run']
    with open(path) as f:
        stats = json.load(f)
    labels = [label for label in ANALYSED if label in stats]
    num_layers = max(len(stats[label]['summary']['mean']) for label in labels)
    header = '| layer | ' + ' | '.join(f'{label}: mean (spread)' for label in labels) + ' |'
    lines = [header, '|---' * (len(labels) + 1) + '|']
    for layer in range(num_layers):
        cells = []
        for label in labels:
            summary = stats[label]['summary']
            if layer >= len(summary['mean']):
                cells.append('')
                continue
            spread = summary['max'][layer] - summary['min'][layer]
            cells.append(f'{_link((summary["mean"][layer], path), root, 1)} ({spread:.1f})')
        lines.append(f'| {layer} | ' + ' | '.join(cells) + ' |')
    lines.append('')
    lines.append('Distances in pixels of the 56-px input (mean over heads; spread = max - min over heads, from the '
                 'same file\'s per-layer `max` and `min`).')
    return lines


def timing_table(root: str) -> List[str]:
    path = osp.join(root, 'timings.json')
    timings: Dict[str, float] = {}
    if osp.isfile(path):
        with open(path) as f:
            timings = json.load(f)
    lines = ['| stage | wall time (s) |', '|---|---|']
    for stage, seconds in timings.items():
        lines.append(f'| {stage} | [{seconds:.1f}]({osp.relpath(path, root)}) |')
    lines.append(f'| all stages (sum of the above) | {sum(timings.values()) / 60:.1f} min |')
    return lines


def diagnostics_table(root: str) -> List[str]:
    """Runs under ``diagnostics/<name>/seed<k>`` (made by hand, e.g. another lr): validation and test top-1."""
    runs = sorted(glob.glob(osp.join(root, 'diagnostics', '*', 'seed*')))
    if not runs:
        return ['none']
    lines = ['| run | validation top-1 | test top-1 |', '|---|---|---|']
    for run in runs:
        lines.append(f'| `{osp.relpath(run, root)}` | {_link(last_scalar(run, "accuracy/top1"), root)} | '
                     f'{_link(test_top1(run), root)} |')
    return lines


def write_report(root: str, configs: dict) -> str:
    """Writes ``root/REPORT.md`` from the outputs found in ``root``; returns its path."""
    now = datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    variants = configs['variants']
    lines = [
        '# Feature Distillation at laptop scale: Fashion-MNIST, DINOv2 ViT-S/14 -> FDViT (4-layer and ViT-S/14)',
        '',
        f'Written {now} on {_machine()}' +
        (' (--quick: tiny budget, numbers are not results)' if configs.get('quick') else '') + '.',
        '',
        f'Configs: distillation `{configs["fd"]}` (4-layer), `{configs["fd_matched"]}` (matched); fine-tuning '
        f'`{configs["finetune"]}` (4-layer rows), `{configs["finetune_matched"]}` (matched rows), '
        f'`{configs["teacher_finetune"]}` (teacher). Training precision: '
        f'{"tools/train.py --amp" if configs.get("amp") else "fp32 (--no-amp)"}. Ablations: ' +
        ', '.join(f'`{v}`' for k, v in variants.items() if k != 'main') + '.',
        '',
        '## Learning rate: seed 0 of every model at each lr of one grid, validation top-1 (2k held-out images)',
        '',
        *grid_table(root, configs['lr_grid']),
        '',
        '## Fine-tuning at the chosen lr (1,000 labelled images, one recipe, 20 epochs)',
        '',
        *finetune_table(root),
        '',
        '## Frozen features (train: the 1,000 labelled images)',
        '',
        *frozen_table(root),
        '',
        '## Ablations of the 4-layer student (same distillation budget; fine-tuned like the FD row)',
        '',
        *ablation_table(root),
        '',
        '## Attention distance per layer (64 test images)',
        '',
        *attention_table(root),
        '',
        'Plots: `analysis/attention_distance.png` (fig. 1: distance per head and layer), '
        '`analysis/attention_maps_*.png` (figs. 2-4: average attention map of every layer).',
        '',
        '## Diagnostic runs (outside the validated comparison)',
        '',
        *diagnostics_table(root),
        '',
        '## Wall time per stage',
        '',
        *timing_table(root),
        '',
    ]
    path = osp.join(root, 'REPORT.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    return path
