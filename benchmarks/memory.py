"""Peak memory of one distillation training step, with and without activation checkpointing (``with_cp``).

Each case runs in a fresh process (a process's peak RSS never goes down): one warm-up step allocates the
optimizer state, then the peak is reset and one more step is measured. On CPU the peak is the process's peak
RSS (``VmHWM``, reset through ``/proc/self/clear_refs``), with glibc's mmap threshold fixed at 64 KiB so that
freed tensors go back to the system instead of staying resident; on CUDA it is
``torch.cuda.max_memory_allocated``. ``state_mib`` is the memory held before the measured step (weights,
optimizer state, inputs) and ``step_mib`` what the step adds on top of it (mostly activations).

Example:
    python benchmarks/memory.py --arch base --img-size 224 --batch 8 --threads 2 --amp bf16
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict

import torch

from common import AMP_DTYPES, WIDTHS, add_step_args, machine_facts, machine_line, print_table, save_results

CASES = (
    'fd_full',
    'fd_full_cp',
    'student_only',
    'student_only_cp',
    'stock_mmpretrain',  # BEiT has no with_cp
    'fd_full_compiled',
    'fd_full_cp_compiled')  # compile=True: each block compiled (in the warm-up step)


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def current_and_reset(device: str) -> float:
    """Memory in use now (MiB), after resetting the peak counter to it."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets VmHWM to the current RSS
    return _rss_kib('VmRSS') / 1024


def peak(device: str) -> float:
    """Peak memory (MiB) since the last reset."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return _rss_kib('VmHWM') / 1024


def run_case(args) -> Dict[str, float]:
    """Builds one case, runs a warm-up step and measures the next one (in this process)."""
    from fd_step import build_distiller, make_step, random_clip_checkpoint, stock_mmpretrain_loss
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, layers = WIDTHS[args.arch]
    with_cp = '_cp' in args.case
    images = torch.randn(args.batch, 3, args.img_size, args.img_size, device=args.device)
    inputs = dict(student=images, teachers=(images, ))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = osp.join(tmp, 'clip.pth')
        random_clip_checkpoint(ckpt, width, layers, args.patch, args.img_size)
        if args.case.startswith('stock'):
            module, loss = stock_mmpretrain_loss(args.arch, args.img_size, args.patch, width)
            module.to(args.device)
            step = make_step(module.parameters(), lambda: loss(inputs), args.amp, args.device)
        else:
            model = build_distiller(args, ckpt, args.amp, with_cp=with_cp).to(args.device).train()
            if args.case.endswith('_compiled'):
                from fdclip_mm.engine import compile_blocks
                compile_blocks(model, {})
            if args.case.startswith('fd_full'):
                step = make_step(model.parameters(), lambda: model(inputs, mode='loss')['loss'], args.amp, args.device,
                                 args.adamw)
            else:
                student = model.student
                del model.branches
                step = make_step(student.parameters(),
                                 lambda: student.forward_features(inputs['student']).float().square().mean(), args.amp,
                                 args.device, args.adamw)
    step()
    state = current_and_reset(args.device)
    step()
    top = peak(args.device)
    return dict(state_mib=state, peak_mib=top, step_mib=top - state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_args(parser)
    parser.add_argument('--amp', default='bf16', choices=sorted(AMP_DTYPES))
    parser.add_argument('--adamw', default='fused', choices=['fused', 'foreach', 'default'])
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=CASES)
    parser.add_argument('--case', choices=CASES, help=argparse.SUPPRESS)  # a child process measures one case
    parser.add_argument('--out', default='work_dirs/benchmarks/memory.json')
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    base = [sys.executable, osp.abspath(__file__)
            ] + [f'--{k.replace("_", "-")}={v}' for k, v in vars(args).items() if k not in ('cases', 'case', 'out')]
    results = {}
    for case in args.cases:
        done = subprocess.run(base + [f'--case={case}'], env=env, capture_output=True, text=True, check=True)
        results[case] = dict(case=case, **json.loads(done.stdout.strip().splitlines()[-1]))
    for case, row in results.items():
        if case.endswith('_cp') and case[:-3] in results:
            row['peak_vs_no_cp'] = row['peak_mib'] / results[case[:-3]]['peak_mib']
            row['step_vs_no_cp'] = row['step_mib'] / results[case[:-3]]['step_mib']
        eager = case[:-len('_compiled')]
        if case.endswith('_compiled') and eager in results:
            row['peak_vs_eager'] = row['peak_mib'] / results[eager]['peak_mib']
            row['step_vs_eager'] = row['step_mib'] / results[eager]['step_mib']
    print(machine_line(machine_facts(args.device, args.threads)))
    print_table(
        list(results.values()), [
            'case', 'state_mib', 'step_mib', 'peak_mib', 'peak_vs_no_cp', 'step_vs_no_cp', 'peak_vs_eager',
            'step_vs_eager'
        ])
    save_results(args, results=results)


if __name__ == '__main__':
    main()
