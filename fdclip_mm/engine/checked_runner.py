"""mmengine's runners with checkpoint loading that cannot go silently wrong and runs that do not overwrite.

:class:`CheckedRunner` (mmengine's ``Runner``) and :class:`CheckedFlexibleRunner` (mmengine's
``FlexibleRunner``, which sharded runs use) give the same guarantees. Our tools build the runner a config names
(``runner_type``) and :class:`CheckedRunner` when it names none (:func:`build_checked_runner`). Where they
deliberately differ from mmengine 0.10.7:

- ``load_from`` (and ``tools/test.py``'s checkpoint) must fit the model exactly: mmengine loads with
  ``strict=False``, warns and goes on with whatever matched, so a backbone file given to ``tools/test.py``
  scores the untrained model. Set ``strict_load = False`` in the config to load what fits on purpose.
- Checkpoint files are read with :func:`fdclip_mm.checkpoint.read_checkpoint`: an unreadable file
  stops the run with its path and what is wrong with it.
- One run per work dir: rank 0 of a run takes the work dir's lock (:mod:`~fdclip_mm.engine.work_dir_lock`)
  before anything is built or written, for the life of its process; a second run there is refused.
- ``resume=True`` without a path (``--resume``): when the work dir holds no checkpoint, it says so and that
  training starts from scratch (mmengine logs "Auto resumed from the latest checkpoint None."); when the
  latest checkpoint is unreadable (a run killed while copying, a disk error), it falls back to the newest
  readable ``epoch_N`` / ``iter_N`` checkpoint and says which one it skipped. ``last_checkpoint`` is read as
  naming a file of its own work dir (a copied work dir resumes from its own files; one naming a file
  elsewhere is refused). A checkpoint past ``max_epochs`` / ``max_iters`` is refused (mmengine ends at once,
  exit 0); one exactly at the end is told in a warning that there is nothing to train.
- ``train()`` without ``resume`` refuses a work dir that already holds checkpoints of a run, which the new
  run would replace (``epoch_N.pth``, ``last_checkpoint``), unless the config sets ``overwrite = True``
  (``tools/train.py --overwrite``), which moves the earlier run's files into ``earlier_run_<date>_<time>/``
  inside the work dir (:func:`~fdclip_mm.engine.run_files.move_earlier_run_aside`) when training starts
  (this run's log folder and config dump stay). ``tools/train.py`` checks the first before the runner is
  built, and a runner refused while it is built removes its lock file again, so a refused run writes
  nothing.
- The config dump never replaces another run's: when the work dir already holds a different dump of the
  same config file (a resumed run with other options, a test run), the new one goes to the run's
  timestamped log folder.
- Runs that cannot train are refused before their first step (:mod:`~fdclip_mm.engine.refusals`): epochs of
  zero iterations, FlexAttention trained on the CPU, a ``compile`` setting torch does not take (before the
  model is built), weights with NaN or infinite values in ``load_from`` or a resumed checkpoint.
- ``compile = True`` (or a dict of ``torch.compile`` arguments) compiles each repeated block of the model
  (:class:`~fdclip_mm.engine.BlockCompileHook`), not mmengine's whole ``train_step``; checkpoints keep
  their keys.
- A distiller's teacher-target cache is checked against the run's training pipeline and images before the
  first step (:class:`~fdclip_mm.engine.TargetCacheCheckHook`, registered by these runners).
- The console gets what a user reads (progress, metrics, warnings, parameter groups); the environment report,
  the config dump, the hook-order table and mmengine's per-parameter ``paramwise_options`` lines go to the
  log file only.
"""
import inspect
import logging
import os.path as osp
from typing import Callable, Optional, Union

from mmengine.device import get_device
from mmengine.dist import get_world_size, is_main_process
from mmengine.logging import MMLogger, print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, FlexibleRunner, Runner
from mmengine.runner.checkpoint import _load_checkpoint

from fdclip_mm.checkpoint import (POINTER_FILE, CheckpointFileError, load_state_dict_exactly, read_checkpoint,
                                  refuse_nonfinite_weights)
from fdclip_mm.checkpoint import revise_keys as revise_state_dict_keys
from fdclip_mm.registry import RUNNERS
from .block_compile import BlockCompileHook, compile_args
from .refusals import RunRefused, check_resumed_run, refuse_empty_epochs, refuse_flex_attention_on_cpu
from .run_files import (entries_named_by, existing_run_files, latest_checkpoint_candidates, move_earlier_run_aside,
                        refuse_to_replace_run)
from .target_cache_check_hook import TargetCacheCheckHook
from .work_dir_lock import held_work_dirs, lock_work_dir, release_work_dir

#: Beginnings of the log messages kept off the console (they stay in the log file).
FILE_ONLY_MESSAGES = (
    'paramwise_options -- ',
    'Config:\n',
    '\n' + '-' * 60 + '\nSystem environment:',
    'Hooks will be executed in the following order',
    # mmengine 0.10.7 about itself: nothing for the user to act on
    'Distributed training is not used, all SyncBatchNorm',
    '"FileClient" will be deprecated',
    '"HardDiskBackend" is the alias of "LocalBackend"')


class FileOnlyFilter(logging.Filter):
    """Drops the messages listed in :data:`FILE_ONLY_MESSAGES` from the handler it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(FILE_ONLY_MESSAGES)


def add_file_only_filter(logger: MMLogger) -> MMLogger:
    """Keeps the messages of :data:`FILE_ONLY_MESSAGES` off ``logger``'s console handlers."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and not any(isinstance(f, FileOnlyFilter) for f in handler.filters):
            handler.addFilter(FileOnlyFilter())
    return logger


class RunGuards:
    """What :class:`CheckedRunner` and :class:`CheckedFlexibleRunner` share (see the module doc)."""

    def __init__(self, *args, **kwargs) -> None:
        arguments = inspect.signature(super().__init__).bind_partial(*args, **kwargs).arguments
        cfg, work_dir = arguments.get('cfg') or {}, arguments['work_dir']
        # before anything is built or written
        locked_here = osp.realpath(work_dir) not in held_work_dirs() and \
            lock_work_dir(work_dir, arguments.get('launcher', 'none'))
        try:
            compile_args(arguments.get('compile') or cfg.get('compile'))
            super().__init__(*args, **kwargs)
        except BaseException:
            if locked_here:  # refused before writing anything: leave nothing behind
                release_work_dir(work_dir)
            raise

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        if not any(isinstance(hook, TargetCacheCheckHook) for hook in self._hooks):
            self.register_hook(TargetCacheCheckHook())
        compile_cfg = self._compile_cfg()
        if compile_args(compile_cfg) is not None and not any(isinstance(h, BlockCompileHook) for h in self._hooks):
            self.register_hook(BlockCompileHook(compile_cfg))

    def _compile_cfg(self):
        """The run's ``compile`` setting (FlexibleRunner keeps its argument, Runner reads its config)."""
        return getattr(self, '_compile', None) or self.cfg.get('compile')

    def _maybe_compile(self, target: str) -> None:
        """Nothing: :class:`~fdclip_mm.engine.BlockCompileHook` compiles the blocks (see the module doc)."""

    def _config_dump(self) -> str:
        filename = osp.basename(self.cfg.filename) if self.cfg.filename is not None else f'{self.timestamp}.py'
        return osp.join(self.work_dir, filename)

    def dump_config(self) -> None:
        """mmengine's config dump, except over a different dump of an earlier run (see the module doc)."""
        target, text = self._config_dump(), self.cfg.dump()
        if osp.isfile(target):
            with open(target) as f:
                if f.read() == text:
                    return
            target = osp.join(self.log_dir, osp.basename(target))
            self.logger.info(f'{self.work_dir} holds the config of an earlier run; this run\'s config is in {target}')
        with open(target, 'w') as f:
            f.write(text)

    def train(self):
        """Refuses to replace an earlier run's checkpoints, or moves them aside with ``overwrite = True``
        (see the module doc), then trains."""
        overwrite = self.cfg.get('overwrite', False)
        refuse_to_replace_run(self.work_dir, self._resume, overwrite)
        if overwrite and not self._resume and is_main_process() and existing_run_files(self.work_dir):
            self._move_earlier_run_aside()
        return super().train()

    def _move_earlier_run_aside(self) -> None:
        """Moves the work dir's earlier run aside, all but this run's log folder and config dump and the files
        this run's config names; this run's dump is then written in place of the earlier one's."""
        keep = entries_named_by(self.cfg.to_dict(), self.work_dir) | {osp.basename(self.log_dir)}
        dump = self._config_dump()
        if osp.isfile(dump):
            with open(dump) as f:
                if f.read() == self.cfg.dump():
                    keep.add(osp.basename(dump))
        folder = move_earlier_run_aside(self.work_dir, keep)
        self.logger.info(f"overwrite: the earlier run's files are now in {folder} (kept; --resume does not look "
                         'there)')
        self.dump_config()

    def build_train_loop(self, loop):
        """mmengine's training loop, refused when its epochs would have no iteration."""
        loop = super().build_train_loop(loop)
        refuse_empty_epochs(loop.dataloader, get_world_size())
        return loop

    def load_or_resume(self) -> None:
        """Resume (``resume=True``) or load ``load_from`` exactly; see the module doc for what differs. Before
        training, a checkpoint past the run's end and FlexAttention trained on the CPU are refused; a run
        resumed at its end is told that there is nothing to train."""
        if self._has_loaded:
            return
        resumed = None
        if self._resume is True and self._load_from is None:
            resumed = self._resume_latest()
            if resumed is None:
                self.logger.info(f'--resume: no checkpoint in {self.work_dir} (no {POINTER_FILE} file, no '
                                 'epoch_N.pth or iter_N.pth): training starts from scratch')
        elif self._resume:
            resumed = self._resume if isinstance(self._resume, str) else self._load_from
            self.resume(resumed)
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)
        self._has_loaded = True
        if isinstance(self._train_loop, BaseLoop):  # training (test() and val() load too)
            finished = check_resumed_run(self._train_loop, resumed) if resumed is not None else None
            if finished is not None:
                self.logger.warning(finished)
            refuse_flex_attention_on_cpu(
                self.model.module if is_model_wrapper(self.model) else self.model, get_device())

    def _resume_latest(self) -> Optional[str]:
        skipped = []
        try:
            candidates = latest_checkpoint_candidates(self.work_dir)
        except ValueError as outside:  # last_checkpoint names a file of another folder
            raise RunRefused(f'--resume: {outside}') from None
        for candidate in candidates:
            try:
                self.resume(candidate)
            except (CheckpointFileError, FileNotFoundError) as err:
                skipped.append(str(err))
                continue
            for reason in skipped:
                self.logger.warning(f'skipped an unreadable checkpoint: {reason}')
            self.logger.info(f'Resumed from {candidate}, the latest readable checkpoint in {self.work_dir}')
            return candidate
        if skipped:
            raise CheckpointFileError(f'--resume: no readable checkpoint in {self.work_dir}: ' + ' | '.join(skipped))
        return None

    def _strict(self, strict: Optional[bool]) -> bool:
        return self.cfg.get('strict_load', True) if strict is None else strict


@RUNNERS.register_module()
class CheckedRunner(RunGuards, Runner):
    """``mmengine.runner.Runner`` with exact checkpoint loading, clear resume and no silent overwrite.

    Same arguments and config as mmengine's Runner; it reads two more top-level config keys:
    ``strict_load`` (default True) and ``overwrite`` (default False). ``tools/train.py`` and
    ``tools/test.py`` use it when the config names no ``runner_type`` (:func:`build_checked_runner`); with
    another library's training script, set ``runner_type = 'fdclip_mm.CheckedRunner'``.
    """

    def build_logger(self, log_level: Union[int, str] = 'INFO', log_file: Optional[str] = None, **kwargs) -> MMLogger:
        return add_file_only_filter(super().build_logger(log_level=log_level, log_file=log_file, **kwargs))

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: Optional[bool] = None,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        """mmengine's ``load_checkpoint`` with a safe, named read and (by default) an exact fit.

        Args:
            filename: Checkpoint path (local files are read by :func:`read_checkpoint`; URLs by mmengine).
            map_location: Where to map the tensors.
            strict: Refuse any key or shape that does not fit; defaults to the config's ``strict_load``
                (True when unset).
            revise_keys: ``(pattern, replacement)`` regexes applied to the checkpoint's keys.

        Returns:
            dict: The checkpoint.
        """
        strict = self._strict(strict)
        checkpoint = read_checkpoint(filename, map_location) if '://' not in str(filename) \
            else _load_checkpoint(filename, map_location=map_location)
        if not isinstance(checkpoint, dict):
            raise CheckpointFileError(f'{filename} holds a {type(checkpoint).__name__}, not a checkpoint dict')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state_dict = revise_state_dict_keys(checkpoint.get('state_dict', checkpoint), revise_keys)
        refuse_nonfinite_weights(state_dict, filename)
        if strict:
            load_state_dict_exactly(model, state_dict, filename)
        else:
            from mmengine.runner.checkpoint import load_state_dict
            load_state_dict(model, state_dict, strict=False, logger='current')
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


@RUNNERS.register_module()
class CheckedFlexibleRunner(RunGuards, FlexibleRunner):
    """``mmengine.runner.FlexibleRunner`` (strategies such as :class:`~fdclip_mm.engine.FSDP2Strategy`) with
    the guarantees of :class:`CheckedRunner`.

    The strategy reads and loads the checkpoint files (our FSDP2 strategy reads them with
    :func:`~fdclip_mm.checkpoint.read_checkpoint` and loads exactly when ``strict``); this runner passes
    the config's ``strict_load`` (default True), resumes from the latest readable checkpoint, refuses to
    replace an earlier run and keeps the console quiet. The FSDP configs name it as their ``runner_type``
    (``runner_type='FlexibleRunner'`` is mmengine's, as named).
    """

    def train(self):
        self._compile = False  # else FlexibleRunner has the strategy compile train_step; BlockCompileHook compiles
        return super().train()

    def build_strategy(self, *args, **kwargs):
        strategy = super().build_strategy(*args, **kwargs)
        add_file_only_filter(strategy.logger)
        return strategy

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: Optional[bool] = None,
                        revise_keys: list = [(r'^module.', '')]):
        """The strategy's load, exact unless the config sets ``strict_load = False``."""
        return super().load_checkpoint(
            filename, map_location=map_location, strict=self._strict(strict), revise_keys=revise_keys)


def build_checked_runner(cfg) -> Runner:
    """The runner of ``cfg``: the ``runner_type`` it names, built as registered (as mmengine's tools build it), or
    :class:`CheckedRunner` when it names none.

    A named runner that is neither of ours (mmengine's ``Runner`` or ``FlexibleRunner``, another library's) runs as
    named, without the guarantees of the module doc; a warning says so. ``overwrite`` needs one of ours, which
    moves the earlier run aside.

    Raises:
        RunRefused: ``overwrite`` with a runner that is not one of ours.
    """
    runner_type = cfg.get('runner_type')
    if runner_type is None:
        return CheckedRunner.from_cfg(cfg)
    runner_cls = RUNNERS.get(runner_type) if isinstance(runner_type, str) else runner_type
    if runner_cls is not None and not issubclass(runner_cls, RunGuards):
        if cfg.get('overwrite', False):
            raise RunRefused(f'--overwrite moves the earlier run aside, which runner_type={runner_type!r} does not '
                             'do: name fdclip_mm.CheckedRunner (or fdclip_mm.CheckedFlexibleRunner), or none')
        print_log(
            f'runner_type={runner_type!r}: {runner_cls.__name__} as the config names it, without fdclip_mm\'s '
            'checks (exact load_from, resume from the latest readable checkpoint, refusals before the first step); '
            'name fdclip_mm.CheckedRunner (or fdclip_mm.CheckedFlexibleRunner), or none, to have them',
            logger='current',
            level=logging.WARNING)
    return RUNNERS.build(cfg)
