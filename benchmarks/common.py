"""Helpers the benchmark scripts share: device-aware timing, matmul peak, FLOP counting, machine facts."""
import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

from fdclip_mm.precision import cpu_has_native_bf16

WIDTHS = {'tiny': (192, 12), 'small': (384, 12), 'base': (768, 12), 'large': (1024, 24)}
AMP_DTYPES = {'none': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def add_step_args(parser: argparse.ArgumentParser) -> None:
    """The arguments every step benchmark takes: model size, input, batch, threads, device."""
    parser.add_argument('--arch', default='base', choices=sorted(WIDTHS))
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch', type=int, default=16)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_interleaved(steps: Dict[str, Callable[[], None]],
                     warmup: int,
                     iters: int,
                     device: str = 'cpu') -> Dict[str, List[float]]:
    """Step times per case, the cases taking turns so that load changes on a shared machine hit all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def matmul_peak_flops(dtype: torch.dtype, device: str, size: int = 2048, iters: int = 5) -> float:
    """Best FLOP/s of a square ``size`` matrix product: the achievable peak that MFU is relative to."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = float('inf')
    for _ in range(iters):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of matrix products, convolutions and attention in one call of ``step`` (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def summarize(times: List[float], batch: int) -> dict:
    median = statistics.median(times)
    return dict(median_s=median, img_per_s=batch / median, times_s=times)


def machine_facts(device: str, threads: int) -> dict:
    """What the numbers were measured on: CPU model, load, torch build, GPU if any."""
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    facts = dict(
        cpu=cpu,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_native_bf16=cpu_has_native_bf16(),
        cpu_count=os.cpu_count(),
        threads=threads,
        torch=torch.__version__,
        load_avg=os.getloadavg() if hasattr(os, 'getloadavg') else None)
    if device.startswith('cuda'):
        facts['gpu'] = torch.cuda.get_device_name(device)
    return facts


def machine_line(facts: dict) -> str:
    """One line naming the machine a table was measured on (printed above every table)."""
    gpu = f", GPU {facts['gpu']}" if 'gpu' in facts else ''
    bf16 = 'native bf16' if facts['cpu_native_bf16'] else 'no native bf16'
    return (f"machine: {facts['cpu']} ({facts['cpu_capability']}, {bf16}), {facts['threads']} thread(s), "
            f"torch {facts['torch']}{gpu}")


def save_results(args, **fields) -> None:
    """Writes ``fields`` with the arguments and the machine to ``args.out`` (JSON) and says where."""
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(args=vars(args), machine=machine_facts(args.device, args.threads), **fields), f, indent=2)
    print(f'saved {args.out}')


def print_table(rows: List[dict], columns: List[str]) -> None:
    """A plain markdown table of ``rows`` (dicts) restricted to ``columns``."""
    cells = [[_fmt(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(c[i]) for c in cells)) for i, col in enumerate(columns)]
    print('| ' + ' | '.join(col.ljust(w) for col, w in zip(columns, widths)) + ' |')
    print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    for c in cells:
        print('| ' + ' | '.join(v.ljust(w) for v, w in zip(c, widths)) + ' |', flush=True)


def _fmt(value) -> str:
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 100 else f'{value:.0f}'
    return str(value)
