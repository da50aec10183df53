"""Which low precision the machine runs fast: bf16 only where the hardware has it.

On a CPU without native bf16 (e.g. AVX2 only), bf16 matrix products are emulated: measured 0.3 GFLOP/s
against 50 GFLOP/s in fp32 on one thread of an AMD EPYC, and a bf16 teacher made the demo's step 6x slower.
``'auto'`` therefore means bf16 on CUDA devices with bf16 and on CPUs with AVX512-BF16 or AMX, fp32 elsewhere.
The environment variable ``FDCLIP_CPU_BF16=0`` (or ``1``) overrides the CPU detection (the test suite sets 0 so
that it computes the same numbers on every CPU).
"""
import logging
import os
from functools import lru_cache
from typing import Optional

import torch
from mmengine.logging import print_log

AUTO = 'auto'


def _cpu_flag(name: str) -> bool:
    """Whether ``/proc/cpuinfo`` lists the flag (False where the file does not exist)."""
    try:
        with open('/proc/cpuinfo') as f:
            return any(line.startswith('flags') and name in line.split() for line in f)
    except OSError:
        return False


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX-BF16 instructions (where oneDNN runs bf16 products natively)."""
    forced = os.environ.get('FDCLIP_CPU_BF16')
    if forced in ('0', '1'):
        return forced == '1'
    check_avx512_bf16 = getattr(torch.cpu, '_is_avx512_bf16_supported', None)
    check_amx = getattr(torch.cpu, '_is_amx_tile_supported', None)
    if check_avx512_bf16 is not None and check_amx is not None:
        return bool(check_avx512_bf16() or check_amx())
    return _cpu_flag('avx512_bf16') or _cpu_flag('amx_bf16')


def device_has_native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` (``'cpu'`` or ``'cuda'``) runs bf16 products natively."""
    if device_type == 'cuda':
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == 'cpu':
        return cpu_has_native_bf16()
    return False


def default_device_type() -> str:
    """The device a model built now will train on: ``'cuda'`` when one is visible, else ``'cpu'``."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def describe_cpu() -> str:
    """One line for logs and benchmark tables, e.g. ``'AVX2, no native bf16'``."""
    native = 'native bf16' if cpu_has_native_bf16() else 'no native bf16'
    return f'{torch.backends.cpu.get_cpu_capability()}, {native}'


@lru_cache(maxsize=None)
def _log_once(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def warn_if_bf16_is_slow(device_type: str, what: str) -> None:
    """Warns (once per message) that an explicit bf16 choice runs emulated on this device."""
    if device_type == 'cpu' and not cpu_has_native_bf16():
        _log_once(f'{what} is bfloat16, but this CPU ({describe_cpu()}) has no native bf16: expect it to run '
                  "many times slower than float32; use 'auto' to pick by hardware.", logging.WARNING)


def resolve_bf16(choice: Optional[str], what: str, device_type: Optional[str] = None) -> Optional[str]:
    """Resolves ``'auto'`` to ``'bfloat16'`` or None (float32) for ``device_type``; other values pass.

    Args:
        choice: ``'auto'``, ``'bfloat16'``, another dtype name or None.
        what: What is being decided, for the log line (e.g. ``'teacher dtype'``).
        device_type: ``'cpu'`` or ``'cuda'``; default: CUDA when visible, else CPU.

    Returns:
        ``'bfloat16'`` or None for ``'auto'``; ``choice`` itself otherwise (warning when an explicit
        ``'bfloat16'`` meets a CPU without native bf16). The decision is logged once.
    """
    device_type = device_type or default_device_type()
    if choice != AUTO:
        if choice == 'bfloat16':
            warn_if_bf16_is_slow(device_type, what)
        return choice
    native = device_has_native_bf16(device_type)
    where = describe_cpu() if device_type == 'cpu' else torch.cuda.get_device_name()
    _log_once(f"{what} 'auto': {'bfloat16' if native else 'float32'} on {device_type} ({where})")
    return 'bfloat16' if native else None
