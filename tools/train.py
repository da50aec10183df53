"""Train a model from an OpenMMLab 2.0 config (distillation or mmpretrain / mmdet / mmseg fine-tuning).

The config's ``default_scope`` decides which library's registry builds it. The runner is the ``runner_type`` the
config names, and our :class:`~fdclip_mm.engine.CheckedRunner` when it names none (the FSDP configs name
:class:`~fdclip_mm.engine.CheckedFlexibleRunner`): mmengine's with exact checkpoint loading, a clear resume and
no silent overwrite of an earlier run (a runner not of ours is built as named, with a warning). A new run into a
work dir that holds a run is refused before anything is written (``--overwrite`` moves the earlier run into a
dated folder inside the work dir), and so is a second run into a work dir that a live run holds. Runs that
cannot train are refused with one line before their first step. ``fdclip_mm`` is imported
first so that our modules are registered, Runner checkpoints can be resumed under
``torch.load(weights_only=True)`` and CPU-only machines can use ``--launcher pytorch|slurm|mpi`` and ``--amp``.
``--amp`` picks its dtype by hardware (:func:`adapt_amp_to_device`).

Examples:
    python tools/train.py configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.3_16xb128-300e_in1k.py
    python tools/train.py CONFIG --resume                  # from the latest checkpoint in the work dir
    python tools/train.py CONFIG --cfg-options data_root=/datasets/imagenet
    python tools/train.py CONFIG --amp --cfg-options train_dataloader.batch_size=64
    tools/dist_train.sh CONFIG 8
"""
import argparse
import os
import os.path as osp
import shlex
import signal
import sys
import warnings
from typing import Optional

# mmengine 0.10.7 imports setuptools' deprecated pkg_resources: not the user's to act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
# The imports below must follow the filter (E402). isort leaves them as they are: it would wrap the noqa
# of the long import onto a line that flake8 does not read for the statement.
# isort: off
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.device import get_device  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

import fdclip_mm  # noqa: F401,E402  (registers our modules)
from fdclip_mm.checkpoint import CheckpointFileError, NonFiniteWeightsError, read_last_checkpoint  # noqa: E402
from fdclip_mm.engine import (  # noqa: E402
    DistributedLaunchRequired, RunRefused, build_checked_runner, destroy_cpu_process_group, is_cpu_only, lock_work_dir,
    merge_cfg_options, prepare_cpu_distributed, refuse_to_replace_run, release_work_dir)
from fdclip_mm.models.algorithms.teacher_target_cache import TargetCacheMismatchError  # noqa: E402
from fdclip_mm.precision import check_amp_dtype, resolve_amp  # noqa: E402
# isort: on

AMP_WRAPPERS = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper', 'CPUAmpOptimWrapper', 'fdclip_mm.CPUAmpOptimWrapper',
                'CheckedAmpOptimWrapper', 'fdclip_mm.CheckedAmpOptimWrapper')
#: Optimizer wrappers with the non-finite-loss policy (:mod:`fdclip_mm.engine.nonfinite_loss`).
CHECKED_WRAPPERS = ('CheckedOptimWrapper', 'fdclip_mm.CheckedOptimWrapper', 'CheckedAmpOptimWrapper',
                    'fdclip_mm.CheckedAmpOptimWrapper', 'CPUAmpOptimWrapper', 'fdclip_mm.CPUAmpOptimWrapper')


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If a checkpoint path is given, resume from it; without a path, resume from the latest '
        'checkpoint in the work directory.')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='start a new run in a work directory that already holds a run: its files are moved into '
        'WORK_DIR/earlier_run_<date>_<time>/ (kept, not resumed); without it such a run is refused')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision training: bfloat16 where the device runs it natively (GPUs '
        'of compute capability >= 8.0, CPUs with AVX512-BF16/AMX), float16 with dynamic loss scaling on '
        'older GPUs (V100), float32 on other CPUs')
    parser.add_argument('--no-validate', action='store_true', help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size over `auto_scale_lr.base_batch_size`')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format will be '
        'merged into the config file. If the value to be overwritten is a list, it should be like '
        'key="[a,b]" or key=a,b. It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]". '
        'Note that the quotation marks are necessary and that no white space is allowed. '
        'data_root=DIR moves every dataset and evaluator file of the config under DIR.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes `--local-rank` (torch >= 2.0) or `--local_rank`; torchrun sets
    # the LOCAL_RANK environment variable instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.overwrite and args.resume is not None:
        parser.error('--overwrite starts a new run and --resume continues one: give one of them')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def checked_wrapper(optim_wrapper: dict) -> bool:
    """Whether the config's optimizer wrapper has the non-finite-loss policy: one of ours, named, or built by one
    of our constructors, which build ``fdclip_mm.CheckedOptimWrapper`` when the config names none."""
    if optim_wrapper.get('type') is None:
        return str(optim_wrapper.get('constructor', '')).startswith('fdclip_mm.')
    return optim_wrapper.get('type') in CHECKED_WRAPPERS


def amp_wrapper(optim_wrapper: dict) -> str:
    """The AMP form of the config's optimizer wrapper: ``fdclip_mm.CheckedAmpOptimWrapper`` for a wrapper with the
    non-finite-loss policy, mmengine's ``AmpOptimWrapper`` for another."""
    return 'fdclip_mm.CheckedAmpOptimWrapper' if checked_wrapper(optim_wrapper) else 'AmpOptimWrapper'


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to its AMP form (:func:`amp_wrapper`; dynamic loss scaling by default).

    Its dtype is decided by :func:`adapt_amp_to_device` when the config is complete.

    Args:
        cfg: The config; ``cfg.optim_wrapper`` is modified in place.
    """
    if cfg.optim_wrapper.get('type') in AMP_WRAPPERS:
        print_log('AMP training is already enabled in the config.', logger='current')
    cfg.optim_wrapper.type = amp_wrapper(cfg.optim_wrapper)
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def amp_device_type() -> str:
    """The device mmengine will train on: ``'cpu'`` on a CPU-only machine, else ``'cuda'``, ``'npu'``, ..."""
    return 'cpu' if is_cpu_only() else get_device()


def adapt_amp_to_device(cfg: Config, device_type: Optional[str] = None) -> None:
    """Fit an AMP optimizer wrapper of the config (``--amp`` or written there) to the device.

    * CPU: ``fdclip_mm.CPUAmpOptimWrapper`` replaces ``AmpOptimWrapper``: mmengine's refuses to run without an
      accelerator, and CPU autocast supports bfloat16 only (a float16 dtype is replaced by ``'auto'``). Its
      dtype is ``'auto'`` (bfloat16 where the CPU runs it natively, float32 elsewhere) unless the config asks
      for ``'bfloat16'``.
    * CUDA: ``AmpOptimWrapper`` (``fdclip_mm.CheckedAmpOptimWrapper`` for a wrapper with the non-finite-loss
      policy, :func:`amp_wrapper`), whose dtype ``'auto'`` or unset is resolved by
      :func:`fdclip_mm.precision.resolve_amp`: bfloat16 without loss scaling on GPUs with native bf16
      (compute capability >= 8.0), float16 with dynamic loss scaling on older ones (V100). An explicit dtype
      stays.
    * Other accelerators: ``AmpOptimWrapper`` with its default dtype where the config says ``'auto'``.

    A dtype name that is none of :data:`fdclip_mm.precision.AMP_DTYPES` (``'nonsense'``, ``'bf16'``) is
    refused: it used to become ``'auto'`` on CPUs.

    Args:
        cfg: The config; ``cfg.optim_wrapper`` is modified in place.
        device_type: The training device; default: the one mmengine uses (:func:`amp_device_type`).
    """
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None or optim_wrapper.get('type') not in AMP_WRAPPERS:
        return
    device_type = device_type or amp_device_type()
    dtype = optim_wrapper.get('dtype')
    check_amp_dtype(dtype)
    if device_type == 'cpu':
        if dtype not in (None, 'auto', 'bfloat16'):
            print_log(f"CPU autocast supports bfloat16 only; dtype={dtype!r} is replaced by 'auto'.", logger='current')
            dtype = None
        optim_wrapper.type = 'fdclip_mm.CPUAmpOptimWrapper'
        optim_wrapper.dtype = dtype or 'auto'
        return
    optim_wrapper.type = amp_wrapper(optim_wrapper)
    dtype, loss_scale = resolve_amp(dtype, optim_wrapper.get('loss_scale', 'dynamic'), device_type)
    optim_wrapper.loss_scale = loss_scale
    if dtype is None:
        optim_wrapper.pop('dtype', None)
    else:
        optim_wrapper.dtype = dtype


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command-line arguments into the config.

    Args:
        cfg: The config read from ``args.config``.
        args: The parsed arguments.

    Returns:
        Config: The updated config.
    """
    cfg.launcher = args.launcher

    # work_dir priority: CLI > config > ./work_dirs/<config file name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.amp:
        enable_amp(cfg)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=...)` '
                               'in the config.')
        cfg.auto_scale_lr.enable = True

    if args.overwrite:
        cfg.overwrite = True

    merge_cfg_options(cfg, args.cfg_options)
    adapt_amp_to_device(cfg)
    return cfg


class SigintRecorder:
    """Notes that Ctrl-C was pressed, then raises ``KeyboardInterrupt`` as Python's default handler does.

    Libraries on the way up may turn the ``KeyboardInterrupt`` into another error (mmengine's config
    formatting, run at every checkpoint, re-raises any exception as ``SyntaxError``); the flag still tells.
    """

    def __init__(self) -> None:
        self.seen = False
        signal.signal(signal.SIGINT, self)

    def __call__(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


def interrupted_message(work_dir: str) -> str:
    """One line for Ctrl-C: where the last valid checkpoint is and the command that continues the run."""
    try:
        last = read_last_checkpoint(work_dir)
    except ValueError:  # names a file of another folder: --resume will say so
        last = None
    if not last:
        return f'Interrupted before the first checkpoint of {work_dir}: nothing to continue from.'
    command = shlex.join(a for a in sys.argv if a != '--overwrite')
    if '--resume' not in sys.argv:
        command += ' --resume'
    return f'Interrupted. Last checkpoint: {last}. Continue with: python {command}'


def start_run(cfg: Config) -> None:
    """What happens before anything of the run is written: a run that would replace an earlier one without
    ``--overwrite`` is refused, and rank 0 takes the work dir's lock (one run per work dir). With
    ``--overwrite``, the runner moves the earlier run aside once it is built (a run refused before that leaves
    the earlier one in place).

    Raises:
        FileExistsError: The work dir holds a run and neither ``--resume`` nor ``--overwrite`` is given.
        NotADirectoryError: The work dir is a file.
        WorkDirInUseError: Another run holds the work dir.
    """
    refuse_to_replace_run(cfg.work_dir, cfg.get('resume', False), cfg.get('overwrite', False))
    lock_work_dir(cfg.work_dir, cfg.launcher)


#: Refusals that tools/train.py prints as one line (exit code 1).
REFUSALS = (FileExistsError, NotADirectoryError, DistributedLaunchRequired, RunRefused, CheckpointFileError,
            NonFiniteWeightsError, TargetCacheMismatchError)


def refuse(refusal: BaseException, work_dir: Optional[str] = None) -> None:
    """Prints the refusal as one line and exits with code 1, leaving ``work_dir`` as it was found when the run
    wrote nothing there."""
    if work_dir is not None:
        release_work_dir(work_dir)
    print(f'[error] {refusal}', file=sys.stderr)
    sys.exit(1)


def main() -> None:
    """Train."""
    args = parse_args()
    cfg = Config.fromfile(args.config)
    try:
        cfg = merge_args(cfg, args)
    except ValueError as invalid:  # an option our tool cannot use: a precision name, ...
        refuse(invalid)
    try:
        start_run(cfg)
        # On CPU: a gloo process group and device_ids=None; on GPU mmengine's init_dist does the work.
        prepare_cpu_distributed(cfg, cfg.launcher)
        runner = build_checked_runner(cfg)
    except REFUSALS as refusal:
        refuse(refusal, cfg.work_dir)
    interrupt = SigintRecorder()
    try:
        runner.train()
    except REFUSALS as refusal:
        refuse(refusal)
    except BaseException:
        if not interrupt.seen:
            raise
        print(interrupted_message(cfg.work_dir), file=sys.stderr)
        sys.exit(130)
    del runner  # its DDP model holds the process group: see destroy_cpu_process_group
    destroy_cpu_process_group()


if __name__ == '__main__':
    main()
