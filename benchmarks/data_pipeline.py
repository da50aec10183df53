"""Images per second of the distillation data pipeline alone, in one process (= one data-loader worker).

The pipeline is the real one, read from a config (default: the ImageNet FD pipeline of our FD configs:
load + decode, RandomResizedCrop 224 scale (0.08, 1) bicubic, horizontal flip, pack), applied with
mmpretrain's transforms to real JPEG files; then the distiller's data preprocessor normalises each batch
twice (student and teacher statistics). Stages are timed cumulatively, so the differences are what each
stage costs per image.

Example:
    python benchmarks/data_pipeline.py --images 'data/dense/coco/train2017/*.jpg' --threads 1
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import time
from typing import Callable, List

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.registry import DefaultScope

from common import machine_facts, machine_line, print_table

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'imagenet_fd.py')
DEFAULT_IMAGES = ['data/dense/coco/train2017/*.jpg', 'data/dense/nyu/images/*/*.jpg']


def images_per_second(run: Callable[[], int], repeats: int) -> float:
    """Median images/s of ``repeats`` calls of ``run`` (which returns how many images it processed)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='a config with a train_pipeline')
    parser.add_argument('--images', nargs='+', default=DEFAULT_IMAGES, help='globs of JPEG files')
    parser.add_argument('--batch', type=int, default=8, help='batch size of the normalisation step')
    parser.add_argument('--passes', type=int, default=20, help='passes over the images per measurement')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1, help='torch threads (a data-loader worker has 1)')
    parser.add_argument('--out', default='work_dirs/benchmarks/data_pipeline.json')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files: List[str] = sorted(f for pattern in args.images for f in glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f'no images match {args.images}; fetch them with scripts/fetch_dense_data.py')

    from mmpretrain.utils import register_all_modules

    import fdclip_mm  # noqa: F401  (registers fdclip_mm.* transforms)
    register_all_modules(init_default_scope=False)
    pipeline_cfg = Config.fromfile(args.config).train_pipeline
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        stages = {
            'decode': Compose(pipeline_cfg[:1]),
            'decode+crop+flip+pack': Compose(pipeline_cfg),
        }
        from fdclip_mm.models.algorithms import DistillDataPreprocessor
        from fdclip_mm.models.teachers import CLIP_MEAN, CLIP_STD
        preprocessor = DistillDataPreprocessor(teacher_mean=CLIP_MEAN, teacher_std=CLIP_STD)

    samples = [dict(img_path=f) for f in files]

    def run_stage(pipeline: Compose) -> Callable[[], int]:

        def run() -> int:
            for _ in range(args.passes):
                for sample in samples:
                    pipeline(dict(sample))
            return args.passes * len(samples)

        return run

    def run_all() -> int:
        batch, count = [], 0
        for _ in range(args.passes):
            for sample in samples:
                batch.append(stages['decode+crop+flip+pack'](dict(sample)))
                if len(batch) == args.batch:
                    preprocessor(default_collate(batch), training=True)
                    count += len(batch)
                    batch = []
        return count

    rows = []
    for name, pipeline in stages.items():
        rows.append(dict(stage=name, img_per_s=images_per_second(run_stage(pipeline), args.repeats)))
    rows.append(dict(stage='+ two normalisations', img_per_s=images_per_second(run_all, args.repeats)))
    for row in rows:
        row['ms_per_img'] = 1000 / row['img_per_s']
    print(f'{len(files)} JPEG files, {args.threads} torch thread(s), one process')
    print(machine_line(machine_facts('cpu', args.threads)))
    print_table(rows, ['stage', 'img_per_s', 'ms_per_img'])
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(args=vars(args), files=files, machine=machine_facts('cpu', args.threads), results=rows), f, indent=2)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
