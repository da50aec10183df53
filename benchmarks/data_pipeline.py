"""Images per second of one data-loader worker: today's training pipelines and the fast ones side by side, on the
same JPEGs, and how many workers a GPU needs with each.

Cases (each a pipeline applied with the real transforms to every file; the cases take turns, A, B, C, A, B, C,
..., and every case draws the same crops in a turn):

- ``fd_before``: the FD configs' pipeline before ``DecodeRandomResizedCrop``: ``CheckedLoadImageFromFile``
  (OpenCV), mmpretrain's ``RandomResizedCrop(backend='pillow')``, ``RandomFlip``, ``PackInputs``;
- ``fd``: the FD config's ``train_pipeline`` (``DecodeRandomResizedCrop`` + ``RandomFlip`` + ``PackInputs``);
- ``fd_pillow``: the same with ``decoder='pillow'`` (the fallback without simplejpeg);
- ``fd_device``: what a worker does when the GPU decodes (``decode_on='device'``): read the file and its
  header, draw the crop and flip, pack;
- ``finetune_before`` / ``finetune``: the same for the fine-tuning pipeline (RandAugment, RandomErasing);
- ``decode_only``: OpenCV's decoding of the file alone (the floor of a CPU path that decodes every pixel).

Each set of files is timed on its own (ImageNet-sized photos, large photos; ``scripts/fetch_benchmark_images.py``
writes both). For each case: images/s (best and median turn), speed-ups over its ``_before`` case, and the
workers one GPU needs to feed ``--gpu-rate`` images/s (the FD step of a ViT-B/16 at ~40% of an H100's bf16 peak:
5,000) with that pipeline: ceil(gpu rate / images/s per worker), at the best turn's rate.

``--device cuda`` also times the other half of ``decode_on='device'``: the data preprocessor decoding batches of
encoded crops with nvJPEG and cropping, resizing, flipping and normalising them on the GPU (``--device cpu``: the
same code on the CPU), and how far its images are from the workers' (mean absolute difference, 0-255).

Run it on one core (the numbers are per worker process)::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/data_pipeline.py
"""
import argparse
import glob
import math
import os
import os.path as osp
import statistics
import time
from typing import Callable, Dict, List

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

from common import machine_facts, machine_line, print_table, save_results, synchronize

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = dict(
    fd=osp.join(REPO, 'configs', '_base_', 'datasets', 'imagenet_fd.py'),
    finetune=osp.join(REPO, 'configs', '_base_', 'datasets', 'imagenet_finetune.py'))
SPED_UP = ('fd', 'fd_pillow', 'finetune')  # the cases compared with their family's ``_before`` case
DEFAULT_SETS = ['imagenet_sized=data/benchmark_images/imagenet_sized/*.jpg', 'large=data/benchmark_images/large/*.jpg']


def todays_pipeline(pipeline: List[dict]) -> List[dict]:
    """``pipeline`` with ``DecodeRandomResizedCrop`` replaced by the two transforms it stands for."""
    before = []
    for step in pipeline:
        if step['type'] != 'fdclip_mm.DecodeRandomResizedCrop':
            before.append(step)
            continue
        crop = {k: v for k, v in step.items() if k not in ('type', 'decode_on', 'decoder', 'flip_prob', 'on_error')}
        before += [
            dict(type='fdclip_mm.CheckedLoadImageFromFile'),
            dict(type='RandomResizedCrop', backend='pillow', **crop)
        ]
        if step.get('flip_prob'):
            before.append(dict(type='RandomFlip', prob=step['flip_prob'], direction='horizontal'))
    return before


def device_pipeline(pipeline: List[dict]) -> List[dict]:
    """The worker's part of ``decode_on='device'``: the crop and flip drawn, the bytes packed."""
    crop = next(dict(step) for step in pipeline if step['type'] == 'fdclip_mm.DecodeRandomResizedCrop')
    flip = next((step for step in pipeline if step['type'] == 'RandomFlip'), None)
    crop.update(decode_on='device', flip_prob=flip['prob'] if flip else 0.)
    return [crop, dict(type='PackInputs')]


def with_decoder(pipeline: List[dict], decoder: str) -> List[dict]:
    """``pipeline`` with its ``DecodeRandomResizedCrop`` using ``decoder``."""
    return [
        dict(step, decoder=decoder) if step['type'] == 'fdclip_mm.DecodeRandomResizedCrop' else step
        for step in pipeline
    ]


def build_cases() -> Dict[str, Callable[[dict], dict]]:
    from mmpretrain.utils import register_all_modules

    import fdclip_mm  # noqa: F401  (registers fdclip_mm.* transforms)
    register_all_modules(init_default_scope=False)
    fd = Config.fromfile(CONFIGS['fd']).train_pipeline
    finetune = Config.fromfile(CONFIGS['finetune']).train_pipeline
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return dict(
            fd_before=Compose(todays_pipeline(fd)),
            fd=Compose(fd),
            fd_pillow=Compose(with_decoder(fd, 'pillow')),
            fd_device=Compose(device_pipeline(fd)),
            finetune_before=Compose(todays_pipeline(finetune)),
            finetune=Compose(finetune),
            decode_only=lambda sample: cv2.imdecode(np.fromfile(sample['img_path'], np.uint8), cv2.IMREAD_COLOR))


def time_cases(cases: Dict[str, Callable], files: List[str], passes: int, repeats: int) -> Dict[str, List[float]]:
    """Images/s of each case in each turn; all cases draw the same crops in a turn."""
    rates = {name: [] for name in cases}
    for turn in range(repeats):
        for name, case in cases.items():
            np.random.seed(turn)
            start = time.perf_counter()
            for _ in range(passes):
                for path in files:
                    case(dict(img_path=path))
            rates[name].append(passes * len(files) / (time.perf_counter() - start))
    return rates


def worker_rows(rates: Dict[str, List[float]], gpu_rate: float) -> List[dict]:
    """Best and median turn of each case, speed-ups over its ``_before`` case, workers per GPU at the best turn's
    rate (a worker with a core of its own; the median is lower on a machine that other jobs share)."""
    rows = []
    for name, values in rates.items():
        best, median = max(values), statistics.median(values)
        before = rates.get(f'{name.split("_")[0]}_before') if name in SPED_UP else None
        rows.append(
            dict(
                case=name,
                best_img_per_s=best,
                median_img_per_s=median,
                speedup_best=best / max(before) if before else None,
                speedup_median=median / statistics.median(before) if before else None,
                workers_per_gpu=math.ceil(gpu_rate / best) if name != 'decode_only' else None))
    return rows


def time_device_decoding(files: List[str], device: str, batch: int, repeats: int) -> dict:
    """The data preprocessor's half of ``decode_on='device'`` on ``device``: images/s, and its distance from the
    workers' images (same crops)."""
    from mmpretrain.datasets.transforms import PackInputs

    from fdclip_mm.datasets import DecodeRandomResizedCrop
    from fdclip_mm.models.algorithms import DistillDataPreprocessor
    from fdclip_mm.models.image_statistics import CLIP_MEAN, CLIP_STD

    paths = (files * math.ceil(batch / len(files)))[:batch]
    encoded, decoded = DecodeRandomResizedCrop(224, decode_on='device'), DecodeRandomResizedCrop(224)
    np.random.seed(0)
    sent = pseudo_collate([PackInputs()(encoded(dict(img_path=p))) for p in paths])
    np.random.seed(0)
    made = torch.stack([PackInputs()(decoded(dict(img_path=p)))['inputs'] for p in paths]).flip(1).float()
    preprocessor = DistillDataPreprocessor(teacher_mean=CLIP_MEAN, teacher_std=CLIP_STD).to(device)
    student = preprocessor(sent, True)['inputs']['student']
    pixels = student.cpu() * preprocessor.std.cpu() + preprocessor.mean.cpu()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        preprocessor(sent, True)
        synchronize(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return dict(
        device=device,
        batch=batch,
        median_s=median,
        img_per_s=batch / median,
        mean_abs_diff_from_workers=(pixels - made).abs().mean().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sets', nargs='+', default=DEFAULT_SETS, help='NAME=GLOB of JPEG files, timed apart')
    parser.add_argument('--passes', type=int, default=2, help='passes over the files per turn')
    parser.add_argument('--repeats', type=int, default=7, help='turns per case')
    parser.add_argument('--gpu-rate', type=float, default=5000., help='images/s one GPU consumes')
    parser.add_argument('--threads', type=int, default=1, help='torch and OpenCV threads (a worker has 1)')
    parser.add_argument('--device', default=None, help="also time the preprocessor's decoding there (cuda, cpu)")
    parser.add_argument('--batch', type=int, default=128, help='batch of the device decoding')
    parser.add_argument('--out', default='work_dirs/benchmarks/data_pipeline.json')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    sets = {}
    for spec in args.sets:
        name, pattern = spec.split('=', 1)
        sets[name] = sorted(glob.glob(pattern))
        if not sets[name]:
            raise FileNotFoundError(f'no files match {pattern}: run scripts/fetch_benchmark_images.py')
    cases = build_cases()
    facts = machine_facts('cpu', args.threads)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    print(machine_line(facts) + f', cores {affinity}, load average at the start {facts["load_avg"]}')
    results = {}
    for name, files in sets.items():
        rates = time_cases(cases, files, args.passes, args.repeats)
        rows = worker_rows(rates, args.gpu_rate)
        print(f'\ndata set {name}: {len(files)} JPEG files, one process; workers per GPU at {args.gpu_rate:.0f} '
              'images/s')
        print_table(rows,
                    ['case', 'best_img_per_s', 'median_img_per_s', 'speedup_best', 'speedup_median', 'workers_per_gpu'])
        results[name] = dict(files=files, rates=rates, rows=rows)
    if args.device:
        device_rows = [time_device_decoding(files, args.device, args.batch, args.repeats) for files in sets.values()]
        for row, name in zip(device_rows, sets):
            row['set'] = name
        print(f'\ndata preprocessor decoding batches of {args.batch} on {args.device}')
        print_table(device_rows, ['set', 'device', 'batch', 'img_per_s', 'mean_abs_diff_from_workers'])
        results['device_decoding'] = device_rows
    load_end = os.getloadavg()
    print(f'load average at the end {load_end}')
    args.device = args.device or 'cpu'
    save_results(args, affinity=affinity, load_avg_end=load_end, results=results)


if __name__ == '__main__':
    main()
