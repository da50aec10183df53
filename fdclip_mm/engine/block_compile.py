"""``torch.compile`` of a model's repeated blocks: what the ``compile`` config key does in our runners.

mmengine 0.10.7's runners compile the whole ``train_step`` (data preprocessor, forward, loss, backward and the
optimizer wrapper's update). We deliberately compile less: each block of every innermost ``nn.ModuleList``
(a ViT's or a teacher's transformer blocks, a Swin stage's blocks) is compiled in place with
``nn.Module.compile``. Blocks of one list share their code, so a 12-block student and a 12-block teacher
compile a handful of graphs instead of one graph of 24 blocks (measured compile times in
``benchmarks/README.md``); the step's Python (masking, the target cache, the loss, the optimizer) stays eager
and works unchanged with DDP, FSDP2, activation checkpointing and several teachers; the module tree, and so
every checkpoint key, stays what an eager run writes (no ``_orig_mod.``), so compiled and eager runs resume
from each other's checkpoints.
"""
from typing import Dict, Iterator, List, Optional, Tuple, Union

from mmcv.cnn.bricks.drop import DropPath as MmcvDropPath
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from fdclip_mm.models.backbones.drop_path import DropPath
from fdclip_mm.registry import HOOKS
from .module_lists import innermost_module_lists

#: The ``torch.compile`` arguments a ``compile=dict(...)`` config may set.
COMPILE_ARGS = ('backend', 'mode', 'options', 'dynamic', 'fullgraph')
#: Keys of mmengine's ``compile`` dict that regional compilation has no use for.
MMENGINE_ONLY_KEYS = ('target', )


def repeated_blocks(module: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """(name, block) for every item of every innermost ``nn.ModuleList`` of ``module`` (see
    :func:`~fdclip_mm.engine.module_lists.innermost_module_lists`) whose items hold other modules (lists of bare
    layers, e.g. an ``nn.ModuleList`` of ``nn.Linear`` heads, are left out)."""
    for name, blocks in innermost_module_lists(module):
        for index, item in enumerate(blocks):
            if next(item.children(), None) is not None:
                yield f'{name}.{index}', item


def compile_args(compile_cfg: Union[bool, dict, None]) -> Optional[dict]:
    """The ``torch.compile`` keyword arguments of a ``compile`` config value; None when compilation is off.

    Raises:
        ValueError: ``compile`` is neither a bool nor a dict, names an argument ``torch.compile`` lacks, or a
            ``backend`` that torch does not know (torch would only say so at the first compiled call, after the
            whole model is built).
    """
    if compile_cfg is None or compile_cfg is False:
        return None
    if compile_cfg is True:
        return {}
    if not isinstance(compile_cfg, dict):
        raise ValueError(f'compile must be True, False or a dict of torch.compile arguments, got {compile_cfg!r}')
    args = {key: value for key, value in compile_cfg.items() if key not in MMENGINE_ONLY_KEYS}
    unknown = sorted(set(args) - set(COMPILE_ARGS))
    if unknown:
        raise ValueError(f'compile={compile_cfg!r}: unknown key(s) {unknown}; the keys are {list(COMPILE_ARGS)} '
                         "(torch.compile's arguments)")
    if isinstance(args.get('backend'), str):
        check_backend(args['backend'])
    return args


def check_backend(name: str) -> None:
    """Raises ``ValueError`` naming ``compile.backend`` when torch has no compile backend ``name`` (registered
    or installed as a plugin)."""
    from torch._dynamo import list_backends
    from torch._dynamo.backends.registry import lookup_backend
    try:
        lookup_backend(name)
    except RuntimeError:  # torch._dynamo.exc.InvalidBackend
        raise ValueError(f'compile.backend={name!r} is not a torch.compile backend; this torch has '
                         f'{list_backends()}') from None


def drop_path_classes() -> Tuple[type, ...]:
    """The stochastic-depth modules a block may hold: mmcv's (which mmpretrain's and mmdet's backbones use), ours
    and, where it is installed, timm's."""
    classes = [MmcvDropPath, DropPath]
    try:
        from timm.layers import DropPath as TimmDropPath
        classes.append(TimmDropPath)
    except ImportError:  # timm is optional
        pass
    return tuple(classes)


def remove_zero_drop_paths(block: nn.Module) -> None:
    """Replaces each drop path of rate 0 inside ``block`` (:func:`drop_path_classes`: a frozen teacher's, a student
    built without stochastic depth) by ``nn.Identity``, which it equals; compiled, mmcv's and timm's
    ``if drop_prob == 0.`` on a float attribute breaks the graph."""
    classes = drop_path_classes()
    zero = [name for name, module in block.named_modules() if isinstance(module, classes) and module.drop_prob == 0]
    for name in zero:
        parent, _, attr = name.rpartition('.')
        setattr(block.get_submodule(parent) if parent else block, attr, nn.Identity())


def compile_blocks(model: nn.Module, args: dict) -> List[str]:
    """Compiles every block of ``model`` (see :func:`repeated_blocks`) in place with ``torch.compile(**args)``
    (after :func:`remove_zero_drop_paths`).

    Returns:
        The names of the compiled blocks.

    Raises:
        ValueError: ``model`` has no repeated blocks to compile.
    """
    names = []
    for name, block in repeated_blocks(model):
        remove_zero_drop_paths(block)
        block.compile(**args)
        names.append(name)
    if not names:
        raise ValueError(f'compile: {type(model).__name__} has no nn.ModuleList of blocks to compile; '
                         'remove the compile key from the config')
    return names


def dynamo_counts() -> Dict[str, int]:
    """Graphs compiled so far in this process and graph breaks by reason (first line of each)."""
    from torch._dynamo.utils import counters
    counts = {'graphs': counters['stats']['unique_graphs']}
    for reason, count in counters['graph_break'].items():
        line = reason.strip().splitlines()[0] if reason.strip() else reason
        counts[f'break: {line}'] = counts.get(f'break: {line}', 0) + count
    return counts


def summarize_blocks(names: List[str]) -> str:
    """``['student.layers.0', ..., 'student.layers.11']`` as ``'student.layers.0-11'`` (per list)."""
    lists: Dict[str, List[str]] = {}
    for name in names:
        parent, index = name.rsplit('.', 1)
        lists.setdefault(parent, []).append(index)
    return ', '.join(f'{parent}.{ids[0]}-{ids[-1]}' if len(ids) > 1 else f'{parent}.{ids[0]}'
                     for parent, ids in lists.items())


@HOOKS.register_module()
class BlockCompileHook(Hook):
    """Compiles the model's repeated blocks before training and reports what compilation did.

    ``fdclip_mm.CheckedRunner`` and ``fdclip_mm.CheckedFlexibleRunner`` register it for a config's
    ``compile`` key (``True`` or a dict of ``torch.compile`` arguments) instead of compiling ``train_step``.
    With another runner, add ``custom_hooks = [dict(type='fdclip_mm.BlockCompileHook', compile=...)]`` and
    leave the config's ``compile`` key unset.

    The blocks are compiled after the model is wrapped (DDP) or sharded (FSDP2) and its checkpoint loaded.
    After the first iteration, the hook logs how many graphs were compiled and each graph break once; after
    each epoch, the graphs compiled during it. A graph compiled after the first epoch means recompilation
    in steady state (a changing shape or Python value): it is logged as a warning with the total. Graphs of
    the validation loop (blocks in eval mode, compiled once) are not counted against training epochs.

    Args:
        compile: ``True`` or a dict of ``torch.compile`` arguments (``backend``, ``mode``, ``options``,
            ``dynamic``, ``fullgraph``).
    """

    priority = 'LOW'

    def __init__(self, compile: Union[bool, dict] = True) -> None:
        self.args = compile_args(compile)
        self.blocks: List[str] = []
        self._counts: Dict[str, int] = {}
        self._reported_breaks: set = set()
        self._first_iter_reported = False
        self._epochs_seen = 0

    def before_train(self, runner) -> None:
        if self.args is None or self.blocks:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.blocks = compile_blocks(model, self.args)
        self._counts = dynamo_counts()
        runner.logger.info(f'torch.compile {self.args or "(defaults)"} of {len(self.blocks)} blocks '
                           f'({summarize_blocks(self.blocks)}); the first iterations compile them')

    def _new_counts(self) -> Dict[str, int]:
        now = dynamo_counts()
        new = {key: now[key] - self._counts.get(key, 0) for key in now if now[key] != self._counts.get(key, 0)}
        self._counts = now
        return new

    def _report(self, runner, when: str, warn_on_graphs: bool) -> None:
        new = self._new_counts()
        graphs = new.pop('graphs', 0)
        for key in new:
            if key not in self._reported_breaks:
                self._reported_breaks.add(key)
                runner.logger.warning(f'torch.compile graph break (logged once): {key[len("break: "):]}')
        if graphs and warn_on_graphs:
            runner.logger.warning(f'torch.compile: {graphs} graph(s) recompiled {when} (total '
                                  f'{self._counts["graphs"]}): a shape or Python value changes between steps; '
                                  'TORCH_LOGS=recompiles says which')
        elif graphs:
            runner.logger.info(f'torch.compile: {graphs} graph(s) compiled {when}')

    def before_train_epoch(self, runner) -> None:
        if self.blocks:
            self._new_counts()  # graphs of validation (eval mode) are not the training epoch's

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.blocks and not self._first_iter_reported:
            self._first_iter_reported = True
            self._report(runner, 'in the first iteration', warn_on_graphs=False)

    def after_train_epoch(self, runner) -> None:
        if self.blocks:
            self._report(runner, f'in epoch {runner.epoch + 1}', warn_on_graphs=self._epochs_seen > 0)
            self._epochs_seen += 1
