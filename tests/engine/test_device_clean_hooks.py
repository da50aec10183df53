"""The engine's device paths, with the GPU faked: generator states of a CUDA run saved and restored, the attention
distance hook's probe images on the model's device, the non-finite-loss flag reduced on the loss's device.

No GPU here: ``torch.cuda``'s generator functions are mocked, a checkpoint read onto the GPU (as mmengine's
resume reads it, ``map_location`` = the run's device) is imitated by :class:`FakeCUDATensor`, and models run on
the meta device under ``RefuseCPUTensors`` (``tests/device_clean.py``).
"""
import random
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
from torch.utils._pytree import tree_map

from fdclip_mm.engine import AttentionDistanceHook, RNGStateHook, get_rng_state, set_rng_state
from fdclip_mm.engine.nonfinite_loss import finite_on_every_rank
from fdclip_mm.models.algorithms import FeatureDistiller
from ..device_clean import META, RefuseCPUTensors
from ..helpers.checkpoints import tiny_vit_arch

#: Two GPUs' Philox generator states (16 bytes each, as ``torch.cuda.get_rng_state_all`` returns them).
CUDA_STATES = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]


class FakeCUDATensor(torch.Tensor):
    """A tensor that says it lives on ``cuda``, as one read with ``map_location='cuda'``: every use but a copy
    to the host fails (the generators' and NumPy's own checks refuse it), ``.cpu()`` gives the data."""

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(cls, data.shape, dtype=data.dtype, device='cuda')

    def __init__(self, data: torch.Tensor) -> None:
        self.host = data

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get('device') == torch.device('cpu'):
            return args[0].host.clone()
        raise RuntimeError(f'{func} on a CUDA tensor (faked) without a GPU')


def on_the_gpu(checkpoint):
    """``checkpoint`` with every tensor on the (fake) GPU, as a resume on a GPU reads it."""
    return tree_map(lambda value: FakeCUDATensor(value) if isinstance(value, torch.Tensor) else value, checkpoint)


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with two initialised GPUs whose generator states are :data:`CUDA_STATES`; returns the list of
    state lists given to ``set_rng_state_all``."""
    restored = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: len(CUDA_STATES))
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: [s.clone() for s in CUDA_STATES])
    monkeypatch.setattr(torch.cuda, 'set_rng_state_all', lambda states: restored.append(list(states)))
    return restored


def assert_cuda_states_restored(restored) -> None:
    """One ``set_rng_state_all`` call with the saved states as CPU byte tensors (all torch's CUDA generator
    takes)."""
    assert len(restored) == 1 and len(restored[0]) == len(CUDA_STATES)
    for state, saved in zip(restored[0], CUDA_STATES):
        assert type(state) is torch.Tensor and state.device.type == 'cpu' and state.dtype == torch.uint8
        assert torch.equal(state, saved)


def test_a_cuda_run_saves_its_gpus_generator_states(fake_cuda, tmp_path):
    state = get_rng_state()
    assert [torch.equal(s, saved) for s, saved in zip(state['cuda'], CUDA_STATES)] == [True, True]
    torch.save({'rng_states': [state]}, tmp_path / 'ckpt.pth')
    loaded = torch.load(tmp_path / 'ckpt.pth', weights_only=True)['rng_states'][0]
    assert len(loaded['cuda']) == 2 and all(torch.equal(a, b) for a, b in zip(loaded['cuda'], CUDA_STATES))


def test_states_read_onto_the_gpu_are_restored(fake_cuda):
    """mmengine's resume maps the checkpoint to the GPU; the generators still get their states."""
    state = get_rng_state()
    expected = draws()
    with pytest.raises(TypeError, match='ByteTensor'):  # as torch refuses a real GPU tensor there
        torch.set_rng_state(on_the_gpu(state)['torch'])
    set_rng_state(on_the_gpu(state))
    assert draws() == expected
    assert_cuda_states_restored(fake_cuda)


def test_hook_saves_and_a_resume_on_the_gpu_replays_the_cuda_states(fake_cuda, tmp_path):
    saver = RNGStateHook()
    saver.after_train_epoch(SimpleNamespace(iter=4))
    checkpoint = {'meta': {'iter': 4}}
    saver.before_save_checkpoint(None, checkpoint)
    expected = draws()
    torch.save(checkpoint, tmp_path / 'epoch_1.pth')

    resumed = RNGStateHook()
    resumed.after_load_checkpoint(None, on_the_gpu(torch.load(tmp_path / 'epoch_1.pth', weights_only=True)))
    resumed.before_train_epoch(SimpleNamespace(iter=4))
    assert draws() == expected
    assert_cuda_states_restored(fake_cuda)


def test_a_gpu_runs_states_resume_on_a_cpu_machine(fake_cuda, monkeypatch):
    """Without a GPU the CUDA states are left alone; the others are restored."""
    state = get_rng_state()
    expected = draws()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    set_rng_state(state)
    assert draws() == expected and not fake_cuda


@pytest.mark.parametrize('part', ['student', 'teacher'])
def test_attention_distance_probe_images_go_to_the_models_device(part, tiny_clip_teacher):
    student = dict(type='FDViT', arch=tiny_vit_arch(32, 2, 2), img_size=32, patch_size=8)
    model = FeatureDistiller(student=student, teacher=tiny_clip_teacher).to(META)
    loader = [dict(inputs=[torch.zeros(3, 32, 32, dtype=torch.uint8)] * 2) for _ in range(2)]
    runner = SimpleNamespace(model=model, val_loop=SimpleNamespace(dataloader=loader))
    hook = AttentionDistanceHook(num_images=3, part=part)
    with RefuseCPUTensors():
        distances = hook.measure(runner)
    assert hook._inputs.device == META and hook._inputs.shape == (3, 3, 32, 32)
    assert distances.device == META and distances.shape == (2, 2)


class Reduced(Exception):
    """Stops :func:`finite_on_every_rank` after its all-reduce (its ``.item()`` needs data)."""


def test_nonfinite_loss_flag_is_reduced_on_the_losss_device():
    """NCCL reduces GPU tensors only: the flag is made on the loss's device."""
    reduced = []

    def all_reduce(tensor, op):
        reduced.append((tensor.device, tensor.dtype, tuple(tensor.shape), op))
        raise Reduced

    with mock.patch.object(torch_dist, 'is_initialized', lambda: True), \
            mock.patch.object(torch_dist, 'get_world_size', lambda: 2), \
            mock.patch.object(torch_dist, 'all_reduce', all_reduce), RefuseCPUTensors(), pytest.raises(Reduced):
        finite_on_every_rank(torch.zeros((), device=META))
    assert reduced == [(META, torch.int32, (1, ), torch_dist.ReduceOp.MIN)]
