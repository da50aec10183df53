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
