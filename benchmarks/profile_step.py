"""Where the time of one distillation training step goes: ``torch.profiler`` top-ops tables of our step and the
stock-mmpretrain step (see ``fd_step.py``), plus each step's self time grouped into matrix products, copies
and casts, optimizer and the rest (elementwise ops, norms, softmax).

Example:
    python benchmarks/profile_step.py --arch base --img-size 224 --batch 8 --threads 2 --amp bf16
"""
import argparse
import os.path as osp
import tempfile
from collections import defaultdict
from typing import Dict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from common import AMP_DTYPES, WIDTHS, add_step_args, machine_facts, machine_line, print_table, save_results
from fd_step import build_distiller, make_step, random_clip_checkpoint, stock_mmpretrain_loss

GROUPS = {
    'matmul':
    ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::mkldnn_convolution', 'aten::convolution_backward',
     'aten::_scaled_dot_product_flash_attention_for_cpu', 'aten::_scaled_dot_product_flash_attention_for_cpu_backward'),
    'copy/cast': ('aten::copy_', 'aten::_to_copy', 'aten::clone', 'aten::contiguous', 'aten::cat'),
}


def grouped_self_time(prof) -> Dict[str, float]:
    """Self CPU seconds per group; the optimizer's ops are found under torch's ``Optimizer.step#...`` span."""
    groups: Dict[str, float] = defaultdict(float)
    optimizer_ops = 0.
    for event in prof.events():
        if event.name.startswith('Optimizer.step#'):
            optimizer_ops += sum(child.self_cpu_time_total for child in _descendants(event)) / 1e6
    for avg in prof.key_averages():
        if avg.key == 'step' or avg.key.startswith(('Optimizer.', 'autograd::engine')):
            continue
        group = next((g for g, names in GROUPS.items() if avg.key in names), 'other')
        groups[group] += avg.self_cpu_time_total / 1e6
    groups['other'] -= optimizer_ops  # optimizer ops are elementwise: move them out of 'other'
    groups['optimizer'] = optimizer_ops
    return dict(groups)


def _descendants(event):
    for child in event.cpu_children:
        yield child
        yield from _descendants(child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_args(parser)
    parser.add_argument('--amp', default='bf16', choices=sorted(AMP_DTYPES))
    parser.add_argument('--adamw', default='fused', choices=['fused', 'foreach', 'default'])
    parser.add_argument('--rows', type=int, default=15)
    parser.add_argument('--out', default='work_dirs/benchmarks/profile_step.json')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, layers = WIDTHS[args.arch]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = osp.join(tmp, 'clip.pth')
        random_clip_checkpoint(ckpt, width, layers, args.patch, args.img_size)
        ours = build_distiller(args, ckpt, args.amp).to(args.device).train()
    images = torch.randint(0, 256, (args.batch, 3, args.img_size, args.img_size), dtype=torch.uint8)
    inputs = ours.data_preprocessor(dict(inputs=images.to(args.device)))['inputs']
    stock, stock_loss = stock_mmpretrain_loss(args.arch, args.img_size, args.patch, width)
    stock.to(args.device)
    steps = dict(
        fd_full=make_step(ours.parameters(), lambda: ours(inputs, mode='loss')['loss'], args.amp, args.device,
                          args.adamw),
        stock_mmpretrain=make_step(stock.parameters(), lambda: stock_loss(inputs), args.amp, args.device))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith('cuda') else [])
    summary = {}
    for name, step in steps.items():
        step()
        step()
        with profile(activities=activities) as prof:
            with record_function('step'):
                step()
        groups = grouped_self_time(prof)
        total = sum(groups.values())
        print(f'== {name}: {total:.2f} s of self time ==')
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=args.rows))
        summary[name] = dict(total_s=total, **{f'{g}_share': t / total for g, t in groups.items()})
    print(machine_line(machine_facts(args.device, args.threads)))
    print_table([dict(case=k, **v) for k, v in summary.items()],
                ['case', 'total_s', 'matmul_share', 'copy/cast_share', 'optimizer_share', 'other_share'])
    save_results(args, results=summary)


if __name__ == '__main__':
    main()
