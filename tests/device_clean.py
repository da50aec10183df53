"""Training steps on torch's ``meta`` device, under a guard that refuses CPU tensors where CUDA does.

A model built on the CPU and moved to ``meta`` keeps its shapes and dtypes but holds no data, so a whole
training step (data preprocessor, forward, loss, backward, optimizer step) runs in milliseconds on any machine,
and a tensor made on the CPU inside the step (``torch.arange(n)`` without ``device=``, a ``torch.tensor``
constant, an index cached on the wrong device) meets the model's tensors there, as it would meet CUDA tensors.

The meta device alone lets some of those meetings pass that CUDA refuses: ``gather``, ``scatter``, in-place
arithmetic and others accept a CPU operand on meta (a masked student's token indices drawn on the CPU pass
``gather`` there and fail on a GPU). :class:`RefuseCPUTensors` closes the gap: under it, any op that takes a
meta tensor and a CPU tensor raises, except where CUDA takes CPU tensors too:

- copies (``.to(device)``, ``copy_``): that is how data reaches the device;
- zero-dimensional CPU tensors, which CUDA kernels take as scalars (AdamW keeps its step count there);
- the indices of advanced indexing (``x[cpu_index]``), which CUDA copies over.

Ops whose output shape depends on the data (``nonzero``, boolean-mask indexing: mmseg's pixel accuracy) have
no meta kernel by default; :func:`meta_train_step` lets torch assume every element is nonzero there.
"""
from typing import Callable, Dict, Iterable, Set

import torch
import torch.fx.experimental._config as fx_config
from mmengine.optim import OptimWrapper
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten
COPY_OPS = frozenset({aten.copy_.default, aten._to_copy.default})
#: Ops whose second argument is a list of indices that CUDA accepts on the CPU.
INDEX_OPS = frozenset(
    {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default})
META = torch.device('meta')


class CPUTensorInStepError(RuntimeError):
    """An op of the step mixed CPU tensors with device (meta) tensors."""


class RefuseCPUTensors(TorchDispatchMode):
    """Raises :class:`CPUTensorInStepError` where an op takes a meta tensor together with a CPU tensor that
    CUDA would refuse (see the module doc). Counts the ops it saw (``ops``), so a test can tell it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        if func not in COPY_OPS:
            checked = (args[0], *args[2:]) if func in INDEX_OPS else args
            tensors = [t for t in tree_leaves((checked, kwargs)) if isinstance(t, torch.Tensor)]
            if any(t.device.type == 'meta' for t in tensors):
                cpu = [tuple(t.shape) for t in tensors if t.device.type == 'cpu' and t.dim() > 0]
                if cpu:
                    raise CPUTensorInStepError(f'{func} got CPU tensors of shapes {cpu} with meta tensors: a tensor '
                                               "made on the CPU inside the step (create it on the input's device)")
        return func(*args, **kwargs)


def adamw(model: nn.Module) -> OptimWrapper:
    """An mmengine ``OptimWrapper`` of AdamW over the trainable parameters, with the multi-tensor kernels that
    torch picks on a GPU (on meta it would pick the per-tensor ones)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, foreach=True))


def stepped_parameters(model: nn.Module, optim_wrapper: OptimWrapper) -> Set[str]:
    """Names of the parameters the optimizer has stepped: their AdamW moments exist and lie on the meta
    device."""
    state = optim_wrapper.optimizer.state
    stepped = set()
    for name, param in model.named_parameters():
        moments = state.get(param, {})
        if 'exp_avg' in moments:
            assert param.device == META and moments['exp_avg'].device == META, name
            stepped.add(name)
    return stepped


def trainable(model: nn.Module, but: Iterable[str] = ()) -> Set[str]:
    """Names of the parameters that require grad, less those starting with a prefix in ``but``."""
    prefixes = tuple(but)
    return {
        name
        for name, p in model.named_parameters() if p.requires_grad and not (prefixes and name.startswith(prefixes))
    }


def meta_train_step(model: nn.Module,
                    data: dict,
                    make_optim_wrapper: Callable[[nn.Module], OptimWrapper] = adamw) -> Dict[str, object]:
    """``model.train_step(data, optim_wrapper)`` on the meta device under :class:`RefuseCPUTensors`.

    Args:
        model: An mmengine ``BaseModel`` built on the CPU as the other tests build it; moved to meta here
            (its data preprocessor then moves each batch there, as to a GPU).
        data: A batch as the data loader gives it (CPU tensors, data samples).
        make_optim_wrapper: Builds the optimizer wrapper of the meta model; :func:`adamw` by default.

    Returns:
        ``log_vars`` (the step's losses, each checked to lie on meta), ``stepped`` (see
        :func:`stepped_parameters`) and ``model`` (on meta).
    """
    model = model.to(META)
    optim_wrapper = make_optim_wrapper(model)
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True), RefuseCPUTensors():
        log_vars = model.train_step(data, optim_wrapper)
    assert log_vars and all(v.device == META for v in log_vars.values()), log_vars
    return dict(log_vars=log_vars, stepped=stepped_parameters(model, optim_wrapper), model=model)
