"""Run a distillation config's teacher once over its training set and write the tokens to a cache file.

The config's training pipeline must be deterministic (the cache holds one view per image): the tool checks
it by loading the first images several times and refuses a pipeline whose outputs differ, and it refuses a
dataset that lists an image twice (a ``RepeatDataset``) before the teacher runs. The cache records the
pipeline, the teacher (its checkpoint's SHA-256, reader, architecture, input size, precision, input
normalisation) and each image's size, modification time and SHA-256; a run that reads the cache must match all
of it (checked when the run starts, before its first step).
Train with the cache::

    python tools/cache_teacher_targets.py CONFIG --out work_dirs/x/teacher_targets.pth
    python tools/train.py CONFIG --cfg-options model.target_cache=work_dirs/x/teacher_targets.pth

An existing file is kept unless ``--overwrite`` is given.
"""
import argparse
import os.path as osp
import sys
import time
import warnings

# mmengine 0.10.7 imports setuptools' deprecated pkg_resources: not the user's to act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
# The imports below must follow the filter (E402).
# isort: off
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope, init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import fdclip_mm  # noqa: F401,E402  (registers our modules)
from fdclip_mm.engine import merge_cfg_options  # noqa: E402
from fdclip_mm.models.algorithms.teacher_target_cache import (  # noqa: E402
    dataset_image_paths, training_pipeline, write_target_cache)
from fdclip_mm.models.feature_map import FeatureMap  # noqa: E402
from fdclip_mm.registry import MODELS  # noqa: E402
# isort: on


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='distillation config (a FeatureDistiller model)')
    parser.add_argument('--out', required=True, help='cache file to write')
    parser.add_argument('--batch-size', type=int, default=64, help='teacher batch size')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing cache file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='config overrides (key=value)')
    return parser.parse_args(argv)


def check_deterministic(dataset, count: int = 4, loads: int = 4) -> None:
    """Refuses a pipeline that gives a different image on another load (random crops, flips, ...): each of the
    first ``count`` images is loaded ``loads`` times (a flip with probability 0.5 escapes 12 comparisons
    with probability 1/4096)."""
    for i in range(min(count, len(dataset))):
        first = dataset[i]['inputs']
        for _ in range(loads - 1):
            if not torch.equal(first, dataset[i]['inputs']):
                raise ValueError(f'the training pipeline is random (image {i} loads differently twice): a cache '
                                 'holds one view per image; use a deterministic pipeline (resize, no crop/flip)')


def check_distinct_images(dataset) -> None:
    """Refuses a dataset that lists an image more than once (a cache holds one entry per image), before the
    teacher runs."""
    paths = dataset_image_paths(dataset)
    if len(set(paths)) != len(paths):
        times = getattr(dataset, 'times', None)
        wrapper = f' ({type(dataset).__name__}, times={times})' if times else ''
        raise ValueError(f'the training dataset{wrapper} lists {len(paths)} items but {len(set(paths))} distinct '
                         'images: a cache holds one entry per image, so cache the images once (for a repeated '
                         'dataset: --cfg-options train_dataloader.dataset.times=1) and train with the repeats')


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.exists(args.out) and not args.overwrite:
        print(f'[error] {args.out} exists; pass --overwrite to replace it', file=sys.stderr)
        return 1
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        merge_cfg_options(cfg, args.cfg_options)
    model_cfg = cfg.model.copy()
    model_cfg.pop('target_cache', None)
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg.update(
        batch_size=args.batch_size,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmpretrain')):
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        model = MODELS.build(model_cfg).eval()
        loader = Runner.build_dataloader(loader_cfg, seed=0)
    check_distinct_images(loader.dataset)
    check_deterministic(loader.dataset)
    keys, chunks = [], []
    start, total = time.time(), len(loader.dataset)
    with torch.no_grad():
        for step, batch in enumerate(loader):
            data = model.data_preprocessor(batch, False)
            chunks.append(model.teacher(data['inputs']['teachers'][0]))
            keys.extend(sample.img_path for sample in data['data_samples'])
            if step % 20 == 0 or len(keys) == total:
                rate = len(keys) / max(time.time() - start, 1e-9)
                print(f'[cache] {len(keys)}/{total} images, {rate:.1f} img/s', flush=True)
    meta = dict(
        teacher=model.teacher_identity(),
        config=osp.abspath(args.config),
        img_size=list(data['inputs']['student'].shape[-2:]),
        pipeline=training_pipeline(cfg.train_dataloader.dataset))
    features = FeatureMap(
        torch.cat([c.patches for c in chunks]).half(),
        None if chunks[0].cls_token is None else torch.cat([c.cls_token for c in chunks]).half())
    write_target_cache(args.out, keys, features, meta, overwrite=args.overwrite)
    print(f'[done] {args.out}: {len(keys)} images, patch grid {features.grid}, {features.patches.shape[1]} channels, '
          f'{time.time() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
