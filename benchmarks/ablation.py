"""What each optimisation of our distillation step buys: the step with the optimisations switched on one by one
(cumulatively), timed in turns in one process on one shared model.

1. ``before``: SDPA attention everywhere, a float32 teacher under autocast, ``torch.optim.AdamW`` defaults;
2. ``+explicit_attn``: the attention backend ``'auto'`` (explicit products for a biased training step on CPU);
3. ``+bf16_teacher``: the teacher's weights held in bf16 (``teacher.dtype='bfloat16'``), run without autocast;
4. ``+fused_adamw``: ``AdamW(fused=True)`` (= our step in ``fd_step.py``).

Compilation is measured by ``fd_step.py --compile`` (each block, as ``compile=True`` does, and the whole model).

Example:
    python benchmarks/ablation.py --arch base --img-size 224 --batch 8 --threads 2 --amp bf16
"""
import argparse
import os.path as osp
import tempfile
from typing import Callable, Dict

import torch

from common import (AMP_DTYPES, WIDTHS, add_step_args, machine_facts, machine_line, print_table, save_results,
                    summarize, time_interleaved)
from fd_step import build_distiller, clip_teacher_cfg, make_step, random_clip_checkpoint
from fdclip_mm.registry import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_args(parser)
    parser.add_argument('--amp', default='bf16', choices=sorted(AMP_DTYPES))
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--out', default='work_dirs/benchmarks/ablation.json')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, layers = WIDTHS[args.arch]
    low = {'bf16': 'bfloat16', 'fp16': 'float16'}.get(args.amp)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = osp.join(tmp, 'clip.pth')
        random_clip_checkpoint(ckpt, width, layers, args.patch, args.img_size)
        model = build_distiller(args, ckpt, 'none').to(args.device).train()
        teachers = dict(
            fp32=model.teacher,
            low=MODELS.build(clip_teacher_cfg(ckpt, width, layers, args.patch, args.img_size, low)).to(args.device))
    images = torch.randint(0, 256, (args.batch, 3, args.img_size, args.img_size), dtype=torch.uint8)
    inputs = model.data_preprocessor(dict(inputs=images.to(args.device)))['inputs']
    blocks = list(model.student.layers)

    def configure(backend: str, teacher: str) -> None:
        model.branches['t0'].teacher = teachers[teacher]
        for block in blocks:
            block.attn.backend = backend

    settings = {
        'before': ('sdpa', 'fp32', 'default'),
        '+explicit_attn': ('auto', 'fp32', 'default'),
        '+bf16_teacher': ('auto', 'low' if low else 'fp32', 'default'),
        '+fused_adamw': ('auto', 'low' if low else 'fp32', 'fused'),
    }
    cases: Dict[str, Callable] = {}
    for name, (backend, teacher, adamw) in settings.items():
        step = make_step(model.parameters(), lambda: model(inputs, mode='loss')['loss'], args.amp, args.device, adamw)

        def configured(step=step, options=(backend, teacher)) -> None:
            configure(*options)
            step()

        cases[name] = configured

    times = time_interleaved(cases, args.warmup, args.iters, args.device)
    rows, first = [], None
    for name, case_times in times.items():
        row = dict(case=name, **summarize(case_times, args.batch))
        first = first or row['median_s']
        row['speedup_vs_before'] = first / row['median_s']
        rows.append(row)
    print(machine_line(machine_facts(args.device, args.threads)))
    print_table(rows, ['case', 'median_s', 'img_per_s', 'speedup_vs_before'])
    save_results(args, results=rows)


if __name__ == '__main__':
    main()
