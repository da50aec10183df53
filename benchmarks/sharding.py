"""Per-rank memory and step time of one distillation step: 1 process, 2-process DDP, 2-process FSDP2.

The same FeatureDistiller (an FDViT student, a random CLIP-layout teacher of the same width, both frozen
teacher and student as the configs build them) runs unwrapped in one process, under DDP on 2 gloo
processes, and sharded with :func:`fdclip_mm.engine.fsdp2_strategy.shard_model` (the FSDP2 strategy's own
sharding) on 2 gloo processes, with the frozen teacher replicated (the default) or sharded too
(``fsdp2_teacher``). Every rank takes the per-rank batch. Each case runs in fresh processes (peak
RSS never goes down): warm-up steps allocate the AdamW state, then the peak is reset and ``--steps`` steps
are measured. ``state_mib`` is the resident memory before the measured steps (libraries, weights, AdamW
state), ``peak_mib`` the peak during them; ``params_share`` the share of the trained values this rank holds.

Example (the table of benchmarks/README.md):
    python benchmarks/sharding.py --width 512 --layers 12 --img-size 112 --batch 8 --steps 10
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from common import machine_facts, machine_line, print_table
from memory import current_and_reset, peak

CASES = {'single': 1, 'ddp': 2, 'fsdp2': 2, 'fsdp2_teacher': 2}


def run_case(args) -> dict:
    """One rank of one case (this process); returns its measurements."""
    import torch.distributed as dist

    from fd_step import clip_teacher_cfg, random_clip_checkpoint
    from fdclip_mm.engine.fsdp2_strategy import auto_shard_units, frozen_shard_units, shard_model
    from fdclip_mm.models.algorithms import FeatureDistiller

    torch.set_num_threads(args.threads)
    distributed = CASES[args.case] > 1
    if distributed:
        dist.init_process_group('gloo')
    torch.manual_seed(0)
    ckpt = osp.join(args.tmp, 'teacher.pth')
    if not distributed or dist.get_rank() == 0:
        random_clip_checkpoint(ckpt, args.width, args.layers, args.patch, args.img_size)
    if distributed:
        dist.barrier()
    arch = dict(
        embed_dims=args.width, num_layers=args.layers, num_heads=args.width // 64, feedforward_channels=4 * args.width)
    model = FeatureDistiller(
        student=dict(type='FDViT', arch=arch, img_size=args.img_size, patch_size=args.patch, drop_path_rate=0.1),
        teacher=clip_teacher_cfg(ckpt, args.width, args.layers, args.patch, args.img_size, None)).train()
    if args.case == 'ddp':
        model = torch.nn.parallel.DistributedDataParallel(model)
    elif args.case == 'fsdp2':
        shard_model(model)
    elif args.case == 'fsdp2_teacher':  # FSDP2Strategy(shard_frozen=True): the frozen teacher sharded too
        shard_model(model, auto_shard_units(model) + frozen_shard_units(model))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, foreach=True)
    images = torch.randn(args.batch, 3, args.img_size, args.img_size)
    inputs = dict(student=images, teacher=images)

    def step() -> None:
        loss = model(inputs, mode='loss')['loss']
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    state = current_and_reset('cpu')
    times = []
    for _ in range(args.steps):
        if distributed:
            dist.barrier()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    local = sum(p.to_local().numel() if hasattr(p, 'to_local') else p.numel() for p in params)
    result = dict(
        case=args.case,
        rank=dist.get_rank() if distributed else 0,
        state_mib=state,
        peak_mib=peak('cpu'),
        step_s=statistics.median(times),
        params_local=local,
        params_full=sum(p.numel() for p in params))
    if distributed:
        dist.destroy_process_group()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--img-size', type=int, default=112)
    parser.add_argument('--patch', type=int, default=16)
    parser.add_argument('--batch', type=int, default=8, help='images per rank and step')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1, help='torch threads per process')
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    parser.add_argument('--case', choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument('--tmp', help=argparse.SUPPRESS)
    parser.add_argument('--out', default='work_dirs/benchmarks/sharding.json')
    args = parser.parse_args()
    if args.case:
        result = run_case(args)
        with open(osp.join(args.tmp, f'{args.case}_rank{result["rank"]}.json'), 'w') as f:
            json.dump(result, f)
        return

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', OMP_NUM_THREADS=str(args.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        options = [
            f'--{k.replace("_", "-")}={v}' for k, v in vars(args).items() if k not in ('cases', 'case', 'tmp', 'out')
        ] + [f'--tmp={tmp}']
        for case in args.cases:
            script = [osp.abspath(__file__), *options, f'--case={case}']
            if CASES[case] > 1:
                command = [
                    sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
                    str(CASES[case]), '--master_port',
                    str(29600 + len(rows)), *script
                ]
            else:
                command = [sys.executable, *script]
            print(f'[run] {case}', flush=True)
            subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            for rank in range(CASES[case]):
                rows.append(json.load(open(osp.join(tmp, f'{case}_rank{rank}.json'))))
    single = next((r for r in rows if r['case'] == 'single'), None)
    for row in rows:
        row['params_share'] = row['params_local'] / row['params_full']
        if single:
            row['state_vs_single'] = row['state_mib'] / single['state_mib']
            row['step_vs_single'] = row['step_s'] / single['step_s']
    facts = machine_facts('cpu', args.threads)
    print(machine_line(facts))
    print_table(
        rows, ['case', 'rank', 'params_share', 'state_mib', 'peak_mib', 'step_s', 'state_vs_single', 'step_vs_single'])
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(args=vars(args), machine=facts, results=rows), f, indent=2)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
