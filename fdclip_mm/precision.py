"""Which low precision the machine runs fast: the one place that resolves ``'auto'``.

On a CPU without native bf16 (e.g. AVX2 only), bf16 matrix products are emulated: measured 0.3 GFLOP/s
against 50 GFLOP/s in fp32 on one thread of an AMD EPYC, and a bf16 teacher made the demo's step 6x slower.
On CUDA, bf16 is native from compute capability 8.0 (A100, H100); older GPUs (V100, the paper's hardware, T4)
run fp16 on their tensor cores, which is what the official Feature-Distillation code uses there.

``'auto'`` therefore means:

* CUDA with compute capability >= 8.0: bfloat16 (teacher weights; autocast without loss scaling).
* CUDA below 8.0: float16 (teacher weights; autocast with dynamic loss scaling), where a choice between bf16
  and fp32 only is asked (:func:`resolve_bf16`, e.g. FSDP2's ``param_dtype``): float32.
* CPU with AVX512-BF16 or AMX: bfloat16 (autocast, no loss scaling); other CPUs: float32.

The environment variable ``FDCLIP_CPU_BF16=0`` (or ``1``) overrides the CPU detection (the test suite sets 0
so that it computes the same numbers on every CPU). Each decision is logged once.
"""
import logging
import os
from functools import lru_cache
from typing import Optional, Tuple, Union

import torch
from mmengine.logging import print_log

AUTO = 'auto'
#: The dtype names mmengine's ``AmpOptimWrapper`` takes, and ours: ``'auto'``.
AMP_DTYPES = (AUTO, 'float16', 'bfloat16', 'float32', 'float64')
#: Short names people write for dtypes; refused with the name to write instead (one spelling per dtype keeps
#: configs and their dumps comparable).
DTYPE_SHORT_NAMES = {'bf16': 'bfloat16', 'fp16': 'float16', 'half': 'float16', 'fp32': 'float32', 'float': 'float32'}
#: Compute capability from which NVIDIA GPUs run bf16 products natively (Ampere: A100 is 8.0).
CUDA_NATIVE_BF16_CAPABILITY = (8, 0)
LossScale = Union[str, float, dict]


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


def cuda_has_native_bf16() -> bool:
    """True when the current CUDA device runs bf16 products natively: compute capability >= 8.0.

    ``torch.cuda.is_bf16_supported()`` is not used on NVIDIA GPUs: by default (``including_emulation=True``)
    it answers True on any GPU where a bf16 tensor can be created, V100 (7.0) and T4 (7.5) included, whose
    tensor cores have no bf16, so bf16 products run without them there, slower than fp16 (and it creates a
    tensor on the current device to find out). The compute capability is read from the device properties.
    On ROCm, torch's own answer is used.
    """
    if not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return bool(torch.cuda.is_bf16_supported())
    return tuple(torch.cuda.get_device_capability()) >= CUDA_NATIVE_BF16_CAPABILITY


def device_has_native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` (``'cpu'`` or ``'cuda'``) runs bf16 products natively."""
    if device_type == 'cuda':
        return cuda_has_native_bf16()
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


def describe_cuda() -> str:
    """One line for logs, e.g. ``'Tesla V100-SXM2-32GB, compute capability 7.0, no native bf16'``."""
    major, minor = torch.cuda.get_device_capability()
    native = 'native bf16' if cuda_has_native_bf16() else 'no native bf16'
    return f'{torch.cuda.get_device_name()}, compute capability {major}.{minor}, {native}'


def describe_device(device_type: str) -> str:
    """:func:`describe_cpu` or :func:`describe_cuda` for ``device_type``; the type itself for others."""
    if device_type == 'cpu':
        return describe_cpu()
    if device_type == 'cuda':
        return describe_cuda()
    return device_type


@lru_cache(maxsize=None)
def _log_once(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def warn_if_bf16_is_slow(device_type: str, what: str) -> None:
    """Warns (once per message) that an explicit bf16 choice runs emulated on this device."""
    if device_type == 'cpu' and not cpu_has_native_bf16():
        _log_once(
            f'{what} is bfloat16, but this CPU ({describe_cpu()}) has no native bf16: expect it to run '
            "many times slower than float32; use 'auto' to pick by hardware.", logging.WARNING)
    elif device_type == 'cuda' and torch.cuda.is_available() and not cuda_has_native_bf16():
        _log_once(
            f'{what} is bfloat16, but this GPU ({describe_cuda()}) has no native bf16: expect it to '
            "run slower than float16; use 'auto' to pick by hardware.", logging.WARNING)


def _auto_dtype(device_type: str, float16: bool) -> Optional[str]:
    if device_has_native_bf16(device_type):
        return 'bfloat16'
    return 'float16' if float16 and device_type == 'cuda' else None


def _resolve(choice: Optional[str], what: str, device_type: Optional[str], float16: bool) -> Optional[str]:
    device_type = device_type or default_device_type()
    if choice != AUTO:
        if choice == 'bfloat16':
            warn_if_bf16_is_slow(device_type, what)
        return choice
    dtype = _auto_dtype(device_type, float16)
    _log_once(f"{what} 'auto': {dtype or 'float32'} on {device_type} ({describe_device(device_type)})")
    return dtype


def resolve_bf16(choice: Optional[str], what: str, device_type: Optional[str] = None) -> Optional[str]:
    """Resolves ``'auto'`` to ``'bfloat16'`` or None (float32) for ``device_type``; other values pass.

    For settings that choose between bf16 and fp32 only (FSDP2's ``param_dtype``, CPU autocast): float16 needs
    loss scaling, which such a setting does not provide.

    Args:
        choice: ``'auto'``, ``'bfloat16'``, another dtype name or None.
        what: What is being decided, for the log line (e.g. ``'FSDP2 param_dtype'``).
        device_type: ``'cpu'`` or ``'cuda'``; default: CUDA when visible, else CPU.

    Returns:
        ``'bfloat16'`` or None for ``'auto'``; ``choice`` itself otherwise (warning when an explicit
        ``'bfloat16'`` meets a device without native bf16). The decision is logged once.
    """
    return _resolve(choice, what, device_type, float16=False)


def resolve_low_precision(choice: Optional[str], what: str, device_type: Optional[str] = None) -> Optional[str]:
    """Resolves ``'auto'`` to ``'bfloat16'``, ``'float16'`` (CUDA without bf16) or None (float32).

    For the frozen teacher's weights and for CUDA autocast: bf16 where the device runs it natively, fp16 on
    GPUs below compute capability 8.0 (V100: the official code's choice there), fp32 on CPUs without bf16.

    Args:
        choice: ``'auto'``, a dtype name or None; anything but ``'auto'`` passes (an explicit ``'bfloat16'``
            on a device without native bf16 warns).
        what: What is being decided, for the log line (e.g. ``'teacher dtype'``).
        device_type: ``'cpu'`` or ``'cuda'``; default: CUDA when visible, else CPU.

    Returns:
        The dtype name, or None for float32. The decision is logged once, e.g.
        ``teacher dtype 'auto': float16 on cuda (Tesla V100-SXM2-32GB, compute capability 7.0, ...)``.
    """
    return _resolve(choice, what, device_type, float16=True)


def check_amp_dtype(dtype: Union[str, torch.dtype, None], key: str = 'optim_wrapper.dtype') -> None:
    """Refuses an AMP dtype that is not None, a ``torch.dtype`` or one of :data:`AMP_DTYPES`.

    Args:
        dtype: The configured value.
        key: The config key, for the message.

    Raises:
        ValueError: Naming ``key``, the value, the accepted names and, for a short name such as ``'bf16'``, the
            name to write.
    """
    if dtype is None or isinstance(dtype, torch.dtype) or dtype in AMP_DTYPES:
        return
    hint = f"; write {DTYPE_SHORT_NAMES[dtype]!r} for {dtype!r}" if dtype in DTYPE_SHORT_NAMES else ''
    raise ValueError(f'{key}={dtype!r} is not a precision name: use one of {list(AMP_DTYPES)} or None{hint}')


def resolve_amp(dtype: Union[str, torch.dtype, None],
                loss_scale: LossScale = 'dynamic',
                device_type: str = 'cuda') -> Tuple[Optional[str], LossScale]:
    """Autocast dtype and loss scaling of mmengine's ``AmpOptimWrapper`` on ``device_type``.

    ``'auto'`` and None (``AmpOptimWrapper``'s own default is float16) follow :func:`resolve_low_precision`:
    bfloat16 without loss scaling where the device runs bf16 natively (bf16 has float32's exponent range;
    ``loss_scale='dynamic'`` becomes a disabled ``GradScaler``, which also saves its per-step inf check), else
    float16 with ``loss_scale`` (dynamic by default). An explicit dtype and its loss scale pass unchanged.

    Args:
        dtype: ``'auto'``, None, a dtype name or a ``torch.dtype``.
        loss_scale: ``AmpOptimWrapper``'s ``loss_scale`` (``'dynamic'``, a float or ``GradScaler`` kwargs).
        device_type: The device that autocasts (``'cuda'``); on others ``'auto'`` / None give None (the
            device's autocast default) and ``loss_scale`` passes.

    Returns:
        ``(dtype, loss_scale)`` for ``AmpOptimWrapper``: a dtype name it accepts or None, and its loss scale.
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).replace('torch.', '')
    if dtype not in (None, AUTO):
        if dtype == 'bfloat16':
            warn_if_bf16_is_slow(device_type, 'AMP dtype')
        return dtype, loss_scale
    if device_type != 'cuda':
        return None, loss_scale
    dtype = _auto_dtype(device_type, float16=True)
    if dtype == 'bfloat16' and loss_scale == 'dynamic':
        loss_scale = dict(enabled=False)
    _log_once(f"AMP dtype 'auto': {dtype} autocast with {_describe_loss_scale(loss_scale)} "
              f'on cuda ({describe_cuda()})')
    return dtype, loss_scale


def _describe_loss_scale(loss_scale: LossScale) -> str:
    if isinstance(loss_scale, dict) and loss_scale.get('enabled') is False:
        return 'no loss scaling'
    return 'dynamic loss scaling' if loss_scale == 'dynamic' else f'loss scale {loss_scale!r}'
