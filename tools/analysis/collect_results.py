"""Metrics of finished work_dirs -> a Markdown table in the layout of the supplement's Tables 1-3.

Each ``--row NAME WORK_DIR [WORK_DIR ...]`` is one method; its work dirs (one per task: ImageNet fine-tuning,
ADE20K, COCO, NYUv2) are merged. Example (Table 1 layout, deltas against MAE)::

    python tools/analysis/collect_results.py --layout table1 --baseline MAE \
        --row MAE work_dirs/mae_in1k work_dirs/mae_ade20k work_dirs/mae_coco work_dirs/mae_nyuv2 \
        --row FD-MAE work_dirs/fdmae_in1k work_dirs/fdmae_ade20k work_dirs/fdmae_coco work_dirs/fdmae_nyuv2

Metrics read (last value logged, a later test run overriding validation): ``accuracy/top1`` (mmpretrain),
``mIoU`` (mmseg), ``coco/bbox_mAP`` / ``coco/segm_mAP`` (mmdet, shown x100), ``rmse`` (mmseg depth).
The ``table2`` layout adds a GPU Time column measured from ``--gpu-time-dir NAME WORK_DIR BATCH_SIZE``.
"""
import argparse

from fdclip_mm.analysis.training_cost import measure_run
from results_table import COLUMNS, LAYOUTS, collect_row, format_table  # beside this script


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--row',
        nargs='+',
        action='append',
        required=True,
        metavar='NAME_OR_DIR',
        help='NAME WORK_DIR [WORK_DIR ...]; repeat for each method, in display order')
    parser.add_argument('--layout', choices=sorted(LAYOUTS), default='table1')
    parser.add_argument('--baseline', help='row the deltas are taken against (default: the first row)')
    parser.add_argument('--columns', nargs='+', choices=sorted(COLUMNS), help='override the layout\'s columns')
    parser.add_argument(
        '--gpu-time-dir',
        nargs=3,
        action='append',
        default=[],
        metavar=('NAME', 'DIR', 'BATCH'),
        help='distillation work dir whose measured device-hours fill NAME\'s GPU Time')
    parser.add_argument('--out', help='also write the table to this Markdown file')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    """Prints (and optionally writes) the table; returns it."""
    args = parse_args(argv)
    columns, delta = LAYOUTS[args.layout]
    columns = args.columns or columns
    hours = {name: measure_run(work_dir, int(batch)).device_hours for name, work_dir, batch in args.gpu_time_dir}
    rows = []
    for tokens in args.row:
        if len(tokens) < 2:
            raise SystemExit(f'--row needs NAME and at least one WORK_DIR, got {tokens}')
        rows.append((tokens[0], collect_row(tokens[1:], columns, hours.get(tokens[0]))))
    table = format_table(rows, columns, baseline=args.baseline or rows[0][0], delta=delta)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')
    return table


if __name__ == '__main__':
    main()
