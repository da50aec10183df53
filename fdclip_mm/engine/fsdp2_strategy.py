"""Sharded training with PyTorch's FSDP2 (``fully_shard`` on a ``DeviceMesh``) for mmengine's FlexibleRunner.

mmengine 0.10.7's ``FSDPStrategy`` wraps with FSDP1, which torch 2.14 refuses on CPU-only machines. FSDP2
shards parameters as ``DTensor`` s in place and runs with the gloo backend on CPU too, so the same strategy
is tested on CPU and runs on GPU clusters.

Checkpoints stay ordinary: every rank takes part in gathering the full model and optimizer state
(:mod:`torch.distributed.checkpoint.state_dict`), rank 0 writes one file in the layout a DDP run writes
(``state_dict`` keyed by parameter name, ``optimizer`` in ``torch.optim``'s index form), atomically. The
converters, ``load_from`` and DDP runs read it, and a sharded run resumes from it (or from a DDP checkpoint).
"""
import fnmatch
import time
from typing import Callable, List, Optional, Sequence

import mmengine
import torch
from mmengine._strategy import DDPStrategy
from mmengine.device import get_device
from mmengine.dist import get_rank, get_world_size, is_main_process
from mmengine.utils import get_git_hash
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from fdclip_mm.checkpoint import CheckpointFileError, CheckpointMismatchError, read_checkpoint, refuse_nonfinite_weights
from fdclip_mm.checkpoint import revise_keys as revise_state_dict_keys
from fdclip_mm.precision import AUTO, resolve_bf16
from fdclip_mm.registry import STRATEGIES
from .atomic_checkpoint_hook import atomic_open
from .module_lists import innermost_module_lists

#: Methods besides ``forward`` through which our models call sharded modules (the distiller calls
#: ``student.forward_features``); registered where a unit has them.
FORWARD_METHODS = ('forward_features', )

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def trained(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def frozen(module: nn.Module) -> bool:
    """Whether ``module`` has parameters and none of them is trained."""
    return next(module.parameters(), None) is not None and not trained(module)


def looked_into(module: nn.Module) -> bool:
    """Whether the units are found among the children of ``module`` rather than in it as a whole: a container,
    or a module that holds frozen parts and no trained parameter of its own (a distiller's per-teacher branch,
    whose frozen teacher sits beside its projector)."""
    return isinstance(module, CONTAINERS) or (any(frozen(child) for child in module.children())
                                              and not any(p.requires_grad for p in module.parameters(recurse=False)))


def _parts(model: nn.Module, prefix: str = ''):
    """(name, module) of the parts of ``model`` that are trained or frozen as a whole, found by
    :func:`looked_into` from its top-level modules down."""
    for name, child in model.named_children():
        name = f'{prefix}{name}'
        if trained(child) and looked_into(child):
            yield from _parts(child, prefix=f'{name}.')
        else:
            yield name, child


def auto_shard_units(model: nn.Module) -> List[str]:
    """The units of any model, found from its structure: every item of an innermost ``nn.ModuleList`` (a ViT's
    blocks, a Swin's blocks) inside a trained part, then each trained part (the student, each projector). The parts
    are the top-level modules, except that containers and modules with frozen parts beside trained ones (a
    per-teacher branch) are looked into (:func:`looked_into`). Lists of lists (a Swin's stages) are not units: a
    parent may call part of an item from its own forward (mmpretrain's Swin runs ``stage.downsample`` outside the
    stage's forward), which only the parent's unit gathers. Frozen parts (a distillation teacher: no parameter
    requires grad) are left out and stay replicated on every rank.

    Returns:
        list: Unit names, deepest first (children are sharded before their parents).
    """
    units = []
    for part_name, part in _parts(model):
        if not trained(part):
            continue
        for name, blocks in innermost_module_lists(part, prefix=part_name):
            units += [f'{name}.{index}' for index, item in enumerate(blocks) if trained(item)]
        units.append(part_name)
    return sorted(dict.fromkeys(units), key=lambda name: -name.count('.'))


def frozen_shard_units(model: nn.Module) -> List[str]:
    """Unit patterns of the frozen parts (see :func:`auto_shard_units`): the items of each of their module lists
    (a teacher's blocks), then the part (``FSDP2Strategy(shard_frozen=True)``)."""
    patterns = []
    for part_name, part in _parts(model):
        if frozen(part):
            patterns += [
                f'{name}.*' for name, module in part.named_modules(prefix=part_name)
                if isinstance(module, nn.ModuleList) and len(module)
            ]
            patterns += [] if isinstance(part, CONTAINERS) else [part_name]
    return patterns


def shard_units(model: nn.Module, patterns: Sequence[str]) -> List[str]:
    """Names of the sub-modules of ``model`` that match one of ``patterns``, deepest first.

    A pattern matches dot-separated names part by part (fnmatch per part, ``*`` never crosses a dot):
    ``'student.layers.*'`` is each block, not the blocks' own sub-modules.

    Raises:
        ValueError: A pattern matches no module.
    """
    names = [name for name, _ in model.named_modules() if name]
    chosen = []
    for pattern in patterns:
        found = [name for name in names if _matches(name, pattern)]
        if not found:
            raise ValueError(f'FSDP2Strategy: shard unit {pattern!r} matches no module of '
                             f'{type(model).__name__} (top-level modules: {[n for n in names if "." not in n]})')
        chosen += [name for name in found if name not in chosen]
    return sorted(chosen, key=lambda name: -name.count('.'))  # fully_shard children before parents


def shard_model(model: nn.Module,
                patterns: Optional[Sequence[str]] = None,
                forward_methods: Sequence[str] = FORWARD_METHODS,
                mp_policy: Optional[MixedPrecisionPolicy] = None,
                reshard_after_forward: bool = True) -> List[str]:
    """``fully_shard`` the modules named by ``patterns`` in place over all ranks of the default group.

    Args:
        model: The model (on its device).
        patterns: Shard units, see :func:`shard_units`; None: :func:`auto_shard_units`.
        forward_methods: Methods besides ``forward`` that gather a unit's parameters when called.
        mp_policy: FSDP2 mixed precision, or None (the parameters' own dtype).
        reshard_after_forward: Free gathered parameters after each unit's forward.

    Returns:
        list: The names of the units, in the order they were sharded.
    """
    mesh = init_device_mesh(get_device(), (get_world_size(), ))
    kwargs = dict(mesh=mesh, reshard_after_forward=reshard_after_forward)
    if mp_policy is not None:
        kwargs['mp_policy'] = mp_policy
    modules = dict(model.named_modules())
    units = auto_shard_units(model) if patterns is None else shard_units(model, patterns)
    for name in units:
        fully_shard(modules[name], **kwargs)
        for method in forward_methods:
            if hasattr(modules[name], method):
                register_fsdp_forward_method(modules[name], method)
    return units


def mixed_precision_policy(param_dtype: Optional[str], device_type: str) -> Optional[MixedPrecisionPolicy]:
    """FSDP2's policy for ``param_dtype`` on ``device_type``: that compute dtype with float32 gradient
    reduction, or None (float32); ``'auto'`` follows :func:`fdclip_mm.precision.resolve_bf16`."""
    dtype = resolve_bf16(param_dtype, 'FSDP2 param_dtype', device_type)
    if dtype is None:
        return None
    return MixedPrecisionPolicy(param_dtype=getattr(torch, dtype), reduce_dtype=torch.float32)


def _matches(name: str, pattern: str) -> bool:
    parts, wanted = name.split('.'), pattern.split('.')
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def optimizer_state_to_indices(state: dict) -> dict:
    """An optimizer state dict keyed by parameter names (``get_optimizer_state_dict``) in ``torch.optim``'s
    own form: parameters numbered 0, 1, ... in the order of the param groups."""
    names = [name for group in state['param_groups'] for name in group['params']]
    index = {name: i for i, name in enumerate(names)}
    groups, start = [], 0
    for group in state['param_groups']:
        groups.append(dict(group, params=list(range(start, start + len(group['params'])))))
        start += len(group['params'])
    return dict(state={index[name]: value for name, value in state['state'].items()}, param_groups=groups)


def optimizer_state_to_names(state: dict, names: List[str]) -> dict:
    """The inverse of :func:`optimizer_state_to_indices` for an optimizer whose parameters are ``names``
    (in param-group order).

    Raises:
        ValueError: The state holds another number of parameters.
    """
    count = sum(len(group['params']) for group in state['param_groups'])
    if count != len(names):
        raise ValueError(f'the checkpoint\'s optimizer holds {count} parameters, this one {len(names)}')
    groups, start = [], 0
    for group in state['param_groups']:
        groups.append(dict(group, params=names[start:start + len(group['params'])]))
        start += len(group['params'])
    return dict(state={names[i]: value for i, value in state['state'].items()}, param_groups=groups)


class DistributedLaunchRequired(RuntimeError):
    """A sharding strategy started as one plain process (``launcher='none'``)."""


@STRATEGIES.register_module()
class FSDP2Strategy(DDPStrategy):
    """Shards the trained modules of any model with FSDP2; frozen ones (a teacher) are replicated on every rank.

    Each unit is one ``fully_shard`` group: its parameters live as ``DTensor`` shards (1/world of each
    tensor per rank, along the first dimension), are gathered for its forward and backward, and its
    gradients are reduce-scattered, so each rank keeps about 1/world of the trained parameters, gradients and
    AdamW state. The optimizer (our constructors, layer decay included) is built on the sharded parameters;
    ``clip_grad`` computes the global norm across shards (``clip_grad_norm_`` on DTensors).

    The units come from the model's structure (:func:`auto_shard_units`: the items of its module lists, then
    each trained part: the student, each teacher's projector), so the distiller with any student, several
    teachers, or the fine-tuning classifier shard without naming anything; a config may name them instead
    (``shard_units``).

    Why frozen modules are not sharded by default: they have no gradients and no optimizer state, so sharding
    a teacher saves only its weights (L/14 in bf16: 0.6 GB) and costs one all-gather per block per step; set
    ``shard_frozen=True`` where its weights do not fit.

    Args:
        shard_units: Patterns of the module names that become ``fully_shard`` units, matched part by part
            (see :func:`shard_units`); children are sharded before their parents. None (default): found from
            the model (:func:`auto_shard_units`).
        forward_methods: Methods besides ``forward`` through which the model calls a unit
            (the distiller calls ``student.forward_features``).
        shard_frozen: Also shard the frozen parts (the teachers), one unit per item of their module lists (a
            teacher's blocks) and the rest.
        param_dtype: Compute dtype of the sharded modules (``MixedPrecisionPolicy``; gradients are reduced
            in float32). ``'auto'``: bfloat16 where the device runs it natively, float32 elsewhere
            (see :mod:`fdclip_mm.precision`); None: float32.
        reshard_after_forward: Free the gathered parameters after each unit's forward (re-gathered for the
            backward): less memory, one more all-gather per unit and step.
        **kwargs: mmengine ``DDPStrategy`` / ``BaseStrategy`` arguments (``model_wrapper`` is not used).
    """

    def __init__(self,
                 *,
                 shard_units: Optional[Sequence[str]] = None,
                 forward_methods: Sequence[str] = FORWARD_METHODS,
                 shard_frozen: bool = False,
                 param_dtype: Optional[str] = AUTO,
                 reshard_after_forward: bool = True,
                 **kwargs) -> None:
        if kwargs.get('env_kwargs', {}).get('launcher', 'none') == 'none':
            raise DistributedLaunchRequired(
                'FSDP2Strategy shards the model over processes and needs a distributed launch: '
                'bash tools/dist_train.sh CONFIG NUM_PROCESSES (or tools/train.py CONFIG --launcher pytorch under '
                'torchrun, or --launcher slurm)')
        super().__init__(**kwargs)
        self.shard_unit_patterns = None if shard_units is None else tuple(shard_units)
        self.forward_methods = tuple(forward_methods)
        self.shard_frozen = shard_frozen
        self.param_dtype = param_dtype
        self.reshard_after_forward = reshard_after_forward

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        """``fully_shard`` the units in place; the model keeps its class, names and ``train_step``."""
        model = self.convert_model(model.to(get_device()))
        patterns = list(self.shard_unit_patterns or auto_shard_units(model))
        if self.shard_frozen:
            patterns += frozen_shard_units(model)
        policy = mixed_precision_policy(self.param_dtype, get_device())
        units = shard_model(model, patterns, self.forward_methods, policy, self.reshard_after_forward)
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.logger.info(f'FSDP2: sharded {len(units)} units over {get_world_size()} '
                         f'ranks ({self._local_fraction(model):.3f} of the trained parameters on this rank)')
        return model

    @staticmethod
    def _local_fraction(model: nn.Module) -> float:
        trained = [p for p in model.parameters() if p.requires_grad]
        local = sum(p.to_local().numel() if hasattr(p, 'to_local') else p.numel() for p in trained)
        return local / max(1, sum(p.numel() for p in trained))

    # ------------------------------------------------------------------------------------- state dicts
    def model_state_dict(self) -> dict:
        """The full state dict (CPU tensors) on rank 0, empty elsewhere; every rank must call it."""
        return get_model_state_dict(self.model, options=FULL)

    def optim_state_dict(self) -> dict:
        """The full optimizer state on rank 0 in ``torch.optim``'s index form; every rank must call it."""
        state = get_optimizer_state_dict(self.model, self.optim_wrapper.optimizer, options=FULL)
        return optimizer_state_to_indices(state) if is_main_process() else {}

    def load_checkpoint(self,
                        filename: str,
                        *,
                        map_location='cpu',
                        strict: bool = True,
                        revise_keys: list = [(r'^module.', '')],
                        callback: Optional[Callable] = None) -> dict:
        """mmengine's strategy load with :func:`~fdclip_mm.checkpoint.read_checkpoint` (an unreadable file
        is named with what is wrong with it), no NaN or infinite weight and, by default, an exact fit (resuming loads
        exactly too)."""
        self.logger.info(f'Load checkpoint from {filename}')
        checkpoint = read_checkpoint(filename, get_device() if map_location == 'default' else map_location)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
            raise CheckpointFileError(f'{filename} holds no state_dict: not a checkpoint of a run')
        refuse_nonfinite_weights(checkpoint['state_dict'], filename)
        if callback is not None:
            callback(checkpoint)
        self.load_model_state_dict(
            checkpoint.pop('state_dict'), strict=strict, revise_keys=revise_keys, source=filename)
        return checkpoint

    def load_model_state_dict(self,
                              state_dict: dict,
                              *,
                              strict: bool = False,
                              revise_keys: list = [(r'^module.', '')],
                              source: str = 'the checkpoint') -> None:
        """Loads a full (unsharded) state dict into the sharded model on every rank.

        Raises:
            CheckpointMismatchError: With ``strict``, naming the missing and unexpected keys.
        """
        state_dict = revise_state_dict_keys(state_dict, revise_keys)
        # The model's own load pre-hooks (the distiller renames the keys of its earlier layouts) see the full state
        # dict first, as in nn.Module.load_state_dict: set_model_state_dict matches the keys against the sharded
        # model before it calls load_state_dict, which runs them too late.
        for hook in self.model._load_state_dict_pre_hooks.values():
            hook(state_dict, '', {}, strict, [], [], [])
        # Before loading: torch 2.14's set_model_state_dict fills the given dict with the model's own tensors
        # for keys it lacks and reports none missing. The model's state_dict() (DTensor shards, nothing
        # gathered) names every key it saves (the distiller leaves its teachers out).
        missing = [k for k in self.model.state_dict() if k not in state_dict]
        result = set_model_state_dict(
            self.model, state_dict, options=StateDictOptions(full_state_dict=True, strict=False))
        if strict and (missing or result.unexpected_keys):
            raise CheckpointMismatchError(f'{source} does not fit {type(self.model).__name__}: missing keys '
                                          f'{missing[:5]}, unexpected keys {result.unexpected_keys[:5]}. Set '
                                          'strict_load = False in the config to load what fits on purpose')

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """Loads a full optimizer state in index form (ours or a DDP run's) into the sharded optimizer."""
        optimizer = self.optim_wrapper.optimizer
        names = [self.param_names[id(p)] for group in optimizer.param_groups for p in group['params']]
        set_optimizer_state_dict(
            self.model,
            optimizer,
            optimizer_state_to_names(state_dict, names),
            options=StateDictOptions(full_state_dict=True))

    def save_checkpoint(self,
                        filename: str,
                        *,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        extra_ckpt: Optional[dict] = None,
                        callback: Optional[Callable] = None) -> None:
        """Every rank gathers; rank 0 writes one ordinary checkpoint, atomically."""
        checkpoint = dict(state_dict=self.model_state_dict())
        if save_optimizer and hasattr(self, 'optim_wrapper'):
            checkpoint['optimizer'] = self.optim_state_dict()
        if save_param_scheduler and hasattr(self, 'param_schedulers'):
            checkpoint['param_schedulers'] = self.scheduler_state_dict()
        extra_ckpt = dict(extra_ckpt or {})
        extra_ckpt.setdefault('meta', {}).update(
            seed=self.seed,
            time=time.strftime('%Y%m%d_%H%M%S', time.localtime()),
            mmengine=mmengine.__version__ + get_git_hash(),
            world_size=get_world_size(),
            sharded_by='FSDP2')
        checkpoint.update(extra_ckpt)
        if callback is not None:
            callback(checkpoint)
        if get_rank() == 0:
            with atomic_open(filename) as f:
                torch.save(checkpoint, f)
