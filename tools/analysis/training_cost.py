"""Training cost of a feature distillation (supplement appendix A): images seen, share of the teacher's
pre-training, and, given a finished run, measured throughput and GPU-hours.

Examples::

    python tools/analysis/training_cost.py --paper          # 384M / 12.8B = 3.0%
    python tools/analysis/training_cost.py configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py
    python tools/analysis/training_cost.py configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py \
        --work-dir work_dirs/demo
"""
import argparse
import json
from dataclasses import asdict
from typing import Optional

from mmengine.config import Config, DictAction

from fdclip_mm.analysis.training_cost import DistillationCost, MeasuredRun, measure_run, paper_cost
from fdclip_mm.engine import merge_cfg_options
from training_cost_config import cost_from_config, train_batch_size  # beside this script


def format_count(value: float) -> str:
    """384000000 -> '384M', 12.8e9 -> '12.8B'."""
    for unit, scale in (('B', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(value) >= scale:
            return f'{value / scale:.4g}{unit}'
    return f'{value:.4g}'


def format_cost(cost: DistillationCost, measured: Optional[MeasuredRun] = None) -> str:
    """A short human-readable report."""
    lines = [
        f'images seen: {format_count(cost.images_seen)} '
        f'({cost.epochs:g} epochs x {format_count(cost.images_per_epoch)})'
    ]
    if cost.fraction is not None:
        lines.append(f'teacher pre-training images: {format_count(cost.teacher_images)}; additional cost: '
                     f'{format_count(cost.images_seen)}/{format_count(cost.teacher_images)} = '
                     f'{100 * cost.fraction:.1f}%')
    if measured is not None:
        lines.append(f'measured: {measured.iterations} iterations x {measured.batch_size} images x '
                     f'{measured.world_size} {measured.device} process(es) = {measured.images_seen} images in '
                     f'{measured.train_seconds:.1f} s; throughput {measured.throughput:.2f} img/s; '
                     f'{measured.device_hours:.4f} {measured.device}-hours')
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', help='distillation config')
    parser.add_argument('--paper', action='store_true', help='the supplement\'s settings (appendix A)')
    parser.add_argument('--work-dir', help='finished run: measure throughput and device-hours from its logs')
    parser.add_argument('--dataset-size', type=float, help='training images per epoch (default: the dataset\'s)')
    parser.add_argument(
        '--teacher-images',
        type=float,
        help='image instances of the teacher\'s pre-training (CLIP: 12.8e9, known by default)')
    parser.add_argument('--json', help='also write the numbers to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='config overrides')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Prints the report; returns its numbers."""
    args = parse_args(argv)
    if args.paper == bool(args.config):
        raise SystemExit('give either a config or --paper')
    measured = None
    if args.paper:
        cost = paper_cost()
    else:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            merge_cfg_options(cfg, args.cfg_options)
        cost = cost_from_config(cfg, args.dataset_size, args.teacher_images)
        if args.work_dir:
            measured = measure_run(args.work_dir, train_batch_size(cfg))
    print(format_cost(cost, measured))
    numbers = dict(asdict(cost), images_seen=cost.images_seen, fraction=cost.fraction)
    if measured is not None:
        numbers['measured'] = dict(
            asdict(measured),
            images_seen=measured.images_seen,
            throughput=measured.throughput,
            device_hours=measured.device_hours)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(numbers, f, indent=1)
    return numbers


if __name__ == '__main__':
    main()
