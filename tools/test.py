"""Test (and evaluate) a checkpoint with an OpenMMLab 2.0 config (mmpretrain / mmdet / mmseg).

The config's ``default_scope`` decides which library's registry builds it. The runner is the ``runner_type`` the
config names, and our :class:`~fdclip_mm.engine.CheckedRunner` when it names none (the FSDP configs name
:class:`~fdclip_mm.engine.CheckedFlexibleRunner`), which refuses a checkpoint that does not fit the model exactly
(set ``strict_load = False`` in the config to load what fits on purpose). A test run holds its work dir like a
training run: a second run there is refused (use another ``--work-dir`` to test while a run trains).
``fdclip_mm`` is imported first so that our modules are registered, Runner checkpoints load under
``torch.load(weights_only=True)`` and CPU-only machines can use ``--launcher pytorch|slurm|mpi``.

Examples:
    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/test.py CONFIG CHECKPOINT --show-dir vis   # draw the predictions, as the library's own test.py
    tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import Dict, Optional

# mmengine 0.10.7 imports setuptools' deprecated pkg_resources: not the user's to act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
# The imports below must follow the filter (E402). isort leaves them as they are: it would wrap the noqa
# of the long import onto a line that flake8 does not read for the statement.
# isort: off
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.evaluator import DumpResults  # noqa: E402

import fdclip_mm  # noqa: F401,E402  (registers our modules)
from fdclip_mm.engine import (  # noqa: E402
    DistributedLaunchRequired, RunRefused, build_checked_runner, destroy_cpu_process_group, is_cpu_only, lock_work_dir,
    merge_cfg_options, prepare_cpu_distributed, release_work_dir)
from fdclip_mm.precision import warn_if_bf16_is_slow  # noqa: E402
# isort: on


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='dump the predictions to this pickle file (.pkl or .pickle) with DumpResults')
    parser.add_argument('--amp', action='store_true', help='test with automatic mixed precision (bfloat16 on CPU)')
    parser.add_argument(
        '--show-dir',
        help="draw the predictions into this folder (mmpretrain: as given; mmdet: under the run's folder in the "
        "work dir; mmseg: the visualizer's save_dir), through the config's visualisation hook")
    parser.add_argument('--show', action='store_true', help='show the drawn predictions in a window')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays (with --show)')
    parser.add_argument('--interval', type=int, default=1, help='draw every N-th test image (default: every one)')
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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must be a .pkl or .pickle file')
    return args


def enable_visualization(cfg: Config, show_dir: Optional[str], show: bool, wait_time: float, interval: int = 1) -> None:
    """Turns on the config's visualisation hook as mmpretrain's, mmdet's and mmseg's own ``tools/test.py`` do.

    Raises:
        ValueError: The config has no visualisation hook of those libraries, or its model predicts nothing to draw
            (a distiller).
    """
    if str(cfg.model.get('type', '')).endswith('FeatureDistiller'):
        raise ValueError('--show-dir/--show: a FeatureDistiller predicts a feature error per image, nothing to draw; '
                         'draw with the fine-tuning or dense-task config of its student')
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = str(hook.get('type', '')).split('.')[-1] if hook else None
    if kind == 'VisualizationHook':  # mmpretrain
        hook.update(enable=True, show=show, wait_time=wait_time, interval=interval)
        if show_dir:
            hook['out_dir'] = show_dir
    elif kind == 'DetVisualizationHook':
        hook.update(draw=True, show=show, wait_time=wait_time, interval=interval)
        if show_dir:
            hook['test_out_dir'] = show_dir
    elif kind == 'SegVisualizationHook':
        hook.update(draw=True, show=show, wait_time=wait_time, interval=interval)
        if show_dir:
            cfg.visualizer['save_dir'] = show_dir
    else:
        raise ValueError(f'--show-dir/--show: default_hooks.visualization of the config is {hook!r}, not the '
                         "visualisation hook of mmpretrain, mmdet or mmseg (inherit the library's default_runtime)")


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

    cfg.load_from = args.checkpoint
    cfg.resume = False

    if args.amp:
        # mmengine's TestLoop autocasts (bfloat16 on CPU, float16 on GPU) when fp16 is set
        cfg.test_cfg = cfg.get('test_cfg') or dict()
        cfg.test_cfg.fp16 = True
        if is_cpu_only():
            warn_if_bf16_is_slow('cpu', '--amp on CPU')

    merge_cfg_options(cfg, args.cfg_options)
    if args.show_dir or args.show:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time, args.interval)
    return cfg


def main() -> Dict[str, float]:
    """Test.

    Returns:
        dict: The metrics.
    """
    args = parse_args()
    cfg = Config.fromfile(args.config)
    try:
        cfg = merge_args(cfg, args)
    except ValueError as err:
        print(f'[error] {err}', file=sys.stderr)
        sys.exit(2)
    try:
        lock_work_dir(cfg.work_dir, cfg.launcher)  # one run per work dir, tests included
        prepare_cpu_distributed(cfg, cfg.launcher)
        runner = build_checked_runner(cfg)
    except (DistributedLaunchRequired, RunRefused, NotADirectoryError) as refusal:
        release_work_dir(cfg.work_dir)  # a refused run leaves nothing behind
        print(f'[error] {refusal}', file=sys.stderr)
        sys.exit(1)
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    del runner  # its DDP model holds the process group: see destroy_cpu_process_group
    destroy_cpu_process_group()
    return metrics


if __name__ == '__main__':
    main()
