"""bf16 only where the hardware runs it: the 'auto' rule of teachers and CPU AMP."""
import logging

import pytest
import torch
from torch import nn

from fdclip_mm import precision
from fdclip_mm.engine import CPUAmpOptimWrapper
from fdclip_mm.registry import MODELS


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_native(value: bool) -> None:
        monkeypatch.setenv('FDCLIP_CPU_BF16', '1' if value else '0')

    return set_native


def test_detection_reads_the_cpu_or_the_override(native_bf16, monkeypatch):
    native_bf16(True)
    assert precision.cpu_has_native_bf16() and precision.device_has_native_bf16('cpu')
    native_bf16(False)
    assert not precision.cpu_has_native_bf16()
    monkeypatch.delenv('FDCLIP_CPU_BF16')
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert precision.cpu_has_native_bf16() == expected
    assert precision.describe_cpu().startswith(torch.backends.cpu.get_cpu_capability())


def test_auto_resolves_by_hardware_and_explicit_choices_pass(native_bf16):
    native_bf16(False)
    assert precision.resolve_bf16('auto', 'x', 'cpu') is None
    assert precision.resolve_bf16('bfloat16', 'x', 'cpu') == 'bfloat16'  # explicit still works
    assert precision.resolve_bf16(None, 'x', 'cpu') is None
    native_bf16(True)
    assert precision.resolve_bf16('auto', 'x', 'cpu') == 'bfloat16'


def test_explicit_bf16_warns_once_on_a_cpu_without_it(native_bf16, monkeypatch):
    native_bf16(False)
    messages = []
    monkeypatch.setattr(precision, 'print_log', lambda msg, **kwargs: messages.append((msg, kwargs['level'])))
    precision._log_once.cache_clear()
    precision.resolve_bf16('bfloat16', 'teacher dtype', 'cpu')
    precision.resolve_bf16('bfloat16', 'teacher dtype', 'cpu')
    assert len(messages) == 1
    assert 'teacher dtype is bfloat16' in messages[0][0] and 'no native bf16' in messages[0][0]
    assert messages[0][1] == logging.WARNING
    native_bf16(True)
    precision.resolve_bf16('bfloat16', 'teacher dtype', 'cpu')
    assert len(messages) == 1


def test_teacher_auto_dtype(native_bf16, tiny_clip_teacher):
    native_bf16(False)
    teacher = MODELS.build(dict(tiny_clip_teacher, dtype='auto'))
    assert teacher.compute_dtype is None and all(p.dtype == torch.float32 for p in teacher.parameters())
    native_bf16(True)
    teacher = MODELS.build(dict(tiny_clip_teacher, dtype='auto'))
    assert teacher.compute_dtype is torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in teacher.parameters())
    with pytest.raises(ValueError, match='auto'):
        MODELS.build(dict(tiny_clip_teacher, dtype='bf16'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU AMP')
def test_cpu_amp_auto_runs_float32_without_native_bf16(native_bf16):
    model = nn.Linear(4, 2)
    native_bf16(False)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert not torch.is_autocast_enabled('cpu')
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.float32 and wrapper.cast_dtype is None
    wrapper.update_params(out.pow(2).mean())
    native_bf16(True)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dtype='auto')
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
    assert wrapper.cast_dtype is torch.bfloat16


#: (name, compute capability) of GPUs on either side of the bf16 line (compute capability 8.0).
V100 = ('Tesla V100-SXM2-32GB', (7, 0))
T4 = ('Tesla T4', (7, 5))
A100 = ('NVIDIA A100-SXM4-80GB', (8, 0))
H100 = ('NVIDIA H100 80GB HBM3', (9, 0))


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a CUDA device with the given (name, capability) is visible; torch's emulation-inclusive
    ``is_bf16_supported`` answers True, as it does on a real V100, and must not decide."""

    def set_gpu(gpu) -> None:
        name, capability = gpu
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)
        monkeypatch.setattr(torch.version, 'hip', None)

    return set_gpu


@pytest.fixture
def log_lines(monkeypatch):
    """The messages precision logs from now on (the once-only cache cleared)."""
    messages = []
    monkeypatch.setattr(precision, 'print_log', lambda msg, **kwargs: messages.append(msg))
    precision._log_once.cache_clear()
    yield messages
    precision._log_once.cache_clear()


@pytest.mark.parametrize('gpu, native', [(V100, False), (T4, False), (A100, True), (H100, True)])
def test_cuda_auto_follows_the_compute_capability(fake_gpu, native_bf16, gpu, native):
    fake_gpu(gpu)
    native_bf16(True)  # the CPU's answer must not leak into the GPU's
    assert precision.default_device_type() == 'cuda'
    assert precision.cuda_has_native_bf16() is native and precision.device_has_native_bf16('cuda') is native
    # teacher weights / CUDA autocast: bf16 where native, fp16 (the official code's V100 choice) elsewhere
    assert precision.resolve_low_precision('auto', 'x') == ('bfloat16' if native else 'float16')
    # bf16-or-fp32 settings (FSDP2's param_dtype): fp32 where bf16 is not native, never fp16
    assert precision.resolve_bf16('auto', 'x') == ('bfloat16' if native else None)
    assert precision.resolve_low_precision('float32', 'x') == 'float32'
    assert precision.resolve_low_precision(None, 'x') is None


def test_cpu_auto_is_unchanged(native_bf16):
    native_bf16(False)
    assert precision.resolve_low_precision('auto', 'x', 'cpu') is None  # never fp16 on a CPU
    native_bf16(True)
    assert precision.resolve_low_precision('auto', 'x', 'cpu') == 'bfloat16'
    assert precision.resolve_amp('auto', 'dynamic', 'cpu') == (None, 'dynamic')


def test_cuda_log_lines_name_the_gpu(fake_gpu, log_lines):
    fake_gpu(V100)
    precision.resolve_low_precision('auto', 'teacher dtype')
    precision.resolve_low_precision('auto', 'teacher dtype')
    assert log_lines == [
        "teacher dtype 'auto': float16 on cuda "
        '(Tesla V100-SXM2-32GB, compute capability 7.0, no native bf16)'
    ]
    fake_gpu(H100)
    precision.resolve_bf16('auto', 'FSDP2 param_dtype')
    assert log_lines[-1] == ("FSDP2 param_dtype 'auto': bfloat16 on cuda "
                             '(NVIDIA H100 80GB HBM3, compute capability 9.0, native bf16)')


def test_explicit_bf16_warns_on_a_gpu_without_it(fake_gpu, log_lines):
    fake_gpu(V100)
    assert precision.resolve_low_precision('bfloat16', 'teacher dtype') == 'bfloat16'
    assert len(log_lines) == 1 and 'this GPU (Tesla V100-SXM2-32GB' in log_lines[0]
    fake_gpu(A100)
    precision.resolve_low_precision('bfloat16', 'teacher dtype')
    assert len(log_lines) == 1


def test_amp_on_cuda_bf16_without_scaling_or_fp16_with_it(fake_gpu, log_lines):
    fake_gpu(H100)
    assert precision.resolve_amp('auto', 'dynamic') == ('bfloat16', {'enabled': False})
    assert precision.resolve_amp(None) == ('bfloat16', {'enabled': False})  # AmpOptimWrapper's unset dtype
    assert precision.resolve_amp('auto', 1024.0) == ('bfloat16', 1024.0)  # an explicit scale stays
    assert precision.resolve_amp('float16', 'dynamic') == ('float16', 'dynamic')  # an explicit dtype stays
    assert precision.resolve_amp(torch.bfloat16, 'dynamic') == ('bfloat16', 'dynamic')
    assert log_lines[0] == ("AMP dtype 'auto': bfloat16 autocast with no loss scaling on cuda "
                            '(NVIDIA H100 80GB HBM3, compute capability 9.0, native bf16)')
    assert len(log_lines) == 2 and 'with loss scale 1024.0' in log_lines[1]
    fake_gpu(V100)
    assert precision.resolve_amp('auto', 'dynamic') == ('float16', 'dynamic')
    assert log_lines[-1] == ("AMP dtype 'auto': float16 autocast with dynamic loss scaling on cuda "
                             '(Tesla V100-SXM2-32GB, compute capability 7.0, no native bf16)')
    assert precision.resolve_amp('auto', 'dynamic', 'npu') == (None, 'dynamic')  # the device's default


@pytest.mark.parametrize('gpu, dtype', [(V100, torch.float16), (H100, torch.bfloat16)])
def test_teacher_auto_dtype_on_gpus(fake_gpu, tiny_clip_teacher, gpu, dtype):
    fake_gpu(gpu)
    teacher = MODELS.build(dict(tiny_clip_teacher, dtype='auto'))
    assert teacher.compute_dtype is dtype and all(p.dtype == dtype for p in teacher.parameters())
    reference = MODELS.build(dict(tiny_clip_teacher, dtype=None))
    assert reference.compute_dtype is None and all(p.dtype == torch.float32 for p in reference.parameters())
    # the half-precision teacher runs (here on the CPU) and returns float32 targets near the float32 ones
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    target, expected = teacher(images).patches, reference(images).patches
    assert target.dtype == torch.float32
    torch.testing.assert_close(target, expected, rtol=0, atol=0.01 if dtype is torch.float16 else 0.1)
