"""Soak test (not in the suite): 2 gloo processes with data-loader workers train a tiny distillation config
for thousands of steps; the peak RSS of every rank (and the RSS of its loader workers) is reported just after
the start and at the end, to show that memory does not grow with the number of steps.

The config is the paper's main FD config (``configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py``)
with the widths shrunk (2 layers, 32 channels), 32-pixel crops, a random CLIP-layout teacher checkpoint and
synthetic JPEGs; the pipeline, loss, optimizer, atomic checkpoints and DDP are the real ones.

Example (the numbers in the README's "Reliability" section):
    python benchmarks/soak_train.py --steps 3000 --workers 2
"""
import argparse
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import tempfile
from typing import Dict, List

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FD_CONFIG = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')
START_ITER = 50  # "start": after the first iterations have allocated the steady-state buffers
EVERY = 1000  # intermediate records, to tell a trend from noise


def proc_memory_kib(pid: int) -> Dict[str, int]:
    """``VmHWM`` (peak RSS) and ``VmRSS`` of a process, in KiB, from ``/proc/PID/status``."""
    values = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('VmHWM', 'VmRSS'):
                values[key] = int(rest.split()[0])
    return values


@HOOKS.register_module()
class FdclipSoakMemoryHook(Hook):
    """Record this rank's and its loader workers' memory at ``START_ITER``, every ``EVERY`` iterations and at
    the end of training."""

    def __init__(self) -> None:
        self.records: List[dict] = []

    def _record(self, runner, done: int) -> None:
        iterator = getattr(runner.train_loop.dataloader, '_iterator', None)  # persistent workers live here
        workers = [w.pid for w in getattr(iterator, '_workers', [])]
        self.records.append(
            dict(iter=done, rank=proc_memory_kib(os.getpid()), workers=[proc_memory_kib(pid) for pid in workers]))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1  # runner.iter counts from 0 and moves on after this hook
        if done == START_ITER or (done % EVERY == 0 and done < runner.max_iters):
            self._record(runner, done)

    def after_train(self, runner) -> None:
        self._record(runner, runner.iter)
        with open(osp.join(runner.work_dir, f'memory_rank{runner.rank}.json'), 'w') as f:
            json.dump(self.records, f)


def tiny_config(work_dir: str, steps: int, workers: int, batch: int, checkpoint_interval: int) -> str:
    """Write the shrunk FD config (and its teacher checkpoint and images) under ``work_dir``."""
    import mmcv
    import numpy as np
    import torch
    from mmengine.config import Config

    from tests.helpers.checkpoints import clip_visual_state_dict

    cfg = Config.fromfile(FD_CONFIG)
    cfg.model.student.update(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64), img_size=32, patch_size=8)
    teacher = osp.join(work_dir, 'teacher.pth')
    torch.save(clip_visual_state_dict(width=32, layers=2, patch=8, image=32), teacher)
    cfg.model.teacher.update(checkpoint=teacher)
    cfg.model.teacher.backbone.arch = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128)
    cfg.model.teacher.backbone.update(patch_size=8, img_size=32)
    rng = np.random.default_rng(0)
    for i in range(64):
        image = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
        mmcv.imwrite(image, osp.join(work_dir, 'images', f'{i:03d}.jpg'))
    pipeline = cfg.train_dataloader.dataset.pipeline
    pipeline[1].scale = 32
    # InfiniteSampler: mmengine's iteration loop pauses 2 s at each end of a finite sampler's epoch
    cfg.train_dataloader.update(
        batch_size=batch,
        num_workers=workers,
        persistent_workers=True,
        pin_memory=False,
        sampler=dict(type='InfiniteSampler', shuffle=True))
    cfg.train_dataloader.dataset = dict(
        type='mmpretrain.CustomDataset', data_root=work_dir, data_prefix='images', with_label=False, pipeline=pipeline)
    cfg.optim_wrapper.type = 'fdclip_mm.CheckedOptimWrapper'  # fp32, the non-finite-loss policy kept
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=steps, by_epoch=False, eta_min=2e-5)]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=steps)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.logger.interval = 500
    cfg.default_hooks.checkpoint.update(interval=checkpoint_interval, by_epoch=False, max_keep_ckpts=2)
    cfg.log_processor = dict(by_epoch=False, window_size=100)
    cfg.custom_imports = dict(imports=['fdclip_mm', 'soak_train'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='mmengine.FdclipSoakMemoryHook')]
    path = osp.join(work_dir, 'soak_fd_tiny.py')
    cfg.dump(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def report(per_rank: List[List[dict]]) -> str:
    """A table in MiB: one line per rank and record (first line: start; last line: end)."""
    lines = ['rank   iter  peak RSS (VmHWM)  RSS (VmRSS)  loader workers RSS (sum)   [MiB]']
    for rank, records in enumerate(per_rank):
        for rec in records:
            workers = sum(w['VmRSS'] for w in rec['workers']) / 1024
            lines.append(f'{rank:4d} {rec["iter"]:6d} {rec["rank"]["VmHWM"] / 1024:17.1f} '
                         f'{rec["rank"]["VmRSS"] / 1024:12.1f} {workers:25.1f}  '
                         f'({len(rec["workers"])} workers)')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--workers', type=int, default=2, help='data-loader workers per rank')
    parser.add_argument('--batch', type=int, default=4, help='images per rank and step')
    parser.add_argument('--checkpoint-interval', type=int, default=1000)
    parser.add_argument('--work-dir', default=None, help='defaults to a temporary folder')
    args = parser.parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='fdclip_soak_')
    os.makedirs(work_dir, exist_ok=True)
    config = tiny_config(work_dir, args.steps, args.workers, args.batch, args.checkpoint_interval)
    env = dict(
        os.environ,
        PORT=str(free_port()),
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(p for p in (osp.dirname(osp.abspath(__file__)), os.environ.get('PYTHONPATH')) if p))
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config, '2', '--work-dir', osp.join(work_dir, 'run')]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'training failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    records = []
    for rank in range(2):
        with open(osp.join(work_dir, 'run', f'memory_rank{rank}.json')) as f:
            records.append(json.load(f))
    print(report(records))
    print(f'work dir: {work_dir}')


if __name__ == '__main__':
    main()
