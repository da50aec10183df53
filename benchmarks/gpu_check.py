"""The one prepared GPU check: every step a first CUDA run needs, timed, with its results under ``--out``
(``summary.md``, the benchmarks' JSON files, ``resume.json`` and ``logs.tar.gz``: 7 files at most).

Run through ``benchmarks/gpu_check.sh`` (which installs the carried wheels first). Steps, each with its own time
limit, each recorded in ``summary.md`` (a failed step does not stop the others; the exit code is 1 if any
failed):

1. ``env``: GPU, driver, torch, CUDA, the packages found.
2. ``flex_tests``: the FlexAttention tests of the suite (values, and gradients into the bias on CUDA).
3. ``fd_step_bN``: the FD training step (``benchmarks/fd_step.py``): ours eager and compiled (each block; at
   the first batch size also the whole model) vs the stock mmpretrain step, masked input, the student alone;
   img/s and MFU against a bf16 matrix product measured in the same run.
4. ``attention``: one biased attention layer per backend (explicit, SDPA, Flex), which SDPA kernels accept
   the float mask, and the largest differences from the explicit path.
5. ``memory``: peak ``max_memory_allocated`` with and without activation checkpointing, eager and compiled.
6. ``train_fp16`` / ``train_bf16``: ``tools/train.py`` on a small FD config over generated images (fp16
   autocast with dynamic loss scaling, then bf16), 2 epochs.
7. ``resume``: 1 epoch, then ``--resume`` to 2; the checkpoint must hold the CUDA generator states and the
   resumed weights must equal the bf16 run's (same seed; on CUDA up to its nondeterministic kernels).
8. ``torchrun_ddp`` / ``torchrun_fsdp2``: ``tools/dist_train.sh`` with world size 1 (NCCL on CUDA), DDP and
   the FSDP2 strategy.
9. ``data_pipeline``: ``benchmarks/data_pipeline.py``: images/s of one loader worker, today's pipelines and the
   fast ones, and the data preprocessor decoding batches on the GPU (nvJPEG), with its distance from the
   workers' images; on the photos of ``data/benchmark_images`` when the run carries them (see
   ``scripts/fetch_benchmark_images.py``), else on generated JPEGs.
10. ``train_gpu_decode``: ``tools/train.py`` on the small FD config with ``decode_on='device'`` (the workers
   send the files, the preprocessor decodes on the GPU), 1 epoch.
11. ``mask_rcnn``: mmdet's ``tools/train.py`` on our Mask R-CNN config (the suite's test), on the GPU with
   mmcv's CUDA ops, if mmdet and such ops are installed.

``--device cpu --tiny`` runs the same steps at a tiny size on a CPU (the test suite does, so the script is
known to work before GPU time is spent).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import time
from typing import List, Optional

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)


def sizes(tiny: bool) -> dict:
    """Model, input and batch sizes of the benchmark and training steps."""
    if tiny:
        return dict(
            arch='tiny',
            img=32,
            batches=[2],
            amp='none',
            threads=1,
            warmup=1,
            iters=2,
            peak=256,
            compile_backend='aot_eager',
            train_img=32,
            train_arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
            train_images=8,
            train_batch=2)
    return dict(
        arch='base',
        img=224,
        batches=[128, 256],
        amp='bf16',
        threads=16,
        warmup=3,
        iters=10,
        peak=None,
        compile_backend='inductor',
        train_img=224,
        train_arch='small',
        train_images=256,
        train_batch=64)


def write_images(root: str, count: int, size: int, seed: int) -> None:
    """``count`` random RGB JPEGs of ``size`` x ``size`` + 32 pixels under ``root``."""
    import numpy as np
    from PIL import Image
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size + 32, size + 32, 3),
                                     dtype=np.uint8)).save(osp.join(root, f'img_{i:04d}.jpg'))


def write_train_config(work: str, s: dict, decode_on: str = 'worker') -> str:
    """A small FD config (the paper's main config, smaller student, random CLIP teacher, generated images);
    ``decode_on='device'``: the JPEGs decoded by the data preprocessor."""
    from mmengine.config import Config

    from fd_step import clip_teacher_cfg, random_clip_checkpoint
    image = s['train_img']
    teacher_ckpt = osp.join(work, 'clip_teacher.pth')
    random_clip_checkpoint(teacher_ckpt, 64, 2, 16 if image >= 64 else 8, image)
    write_images(osp.join(work, 'images', 'train'), s['train_images'], image, seed=0)
    write_images(osp.join(work, 'images', 'val'), max(2, s['train_images'] // 8), image, seed=1)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'))
    patch = 16 if image >= 64 else 8
    cfg.model.student.update(arch=s['train_arch'], img_size=image, patch_size=patch)
    cfg.model.teacher = clip_teacher_cfg(teacher_ckpt, 64, 2, patch, image, 'auto')
    pipeline = [
        dict(type='fdclip_mm.CheckedLoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=image),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs')
    ] if decode_on == 'worker' else [
        dict(type='fdclip_mm.DecodeRandomResizedCrop', scale=image, flip_prob=0.5, decode_on='device'),
        dict(type='PackInputs')
    ]
    val_pipeline = [
        dict(type='fdclip_mm.CheckedLoadImageFromFile'),
        dict(type='CenterCrop', crop_size=image),
        dict(type='PackInputs')
    ]
    for loader, split, steps in ((cfg.train_dataloader, 'train', pipeline), (cfg.val_dataloader, 'val', val_pipeline)):
        loader.update(batch_size=s['train_batch'], num_workers=2, persistent_workers=False)
        loader.dataset = dict(
            type='mmpretrain.CustomDataset',
            data_root=osp.join(work, 'images'),
            data_prefix=split,
            with_label=False,
            pipeline=steps)
    if decode_on == 'device':
        cfg.train_dataloader.collate_fn = dict(type='pseudo_collate')
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=2)
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=2, by_epoch=True, begin=0, end=2)]
    cfg.randomness = dict(seed=0)
    cfg.default_hooks.checkpoint = dict(type='fdclip_mm.AtomicCheckpointHook', interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    path = osp.join(work, 'fd_small.py' if decode_on == 'worker' else f'fd_small_{decode_on}.py')
    cfg.dump(path)
    return path


class Check:
    """Runs the steps, records each one's outcome and time, writes ``summary.md``."""

    def __init__(self, out: str, logs: str) -> None:
        self.out, self.logs = out, logs
        os.makedirs(logs, exist_ok=True)
        self.rows: List[dict] = []

    def step(self,
             name: str,
             cmd: List[str],
             timeout: int,
             env: Optional[dict] = None,
             skip: Optional[str] = None) -> bool:
        if skip:
            self.rows.append(dict(step=name, status='skipped', seconds=0., note=skip))
            print(f'[{name}] skipped: {skip}', flush=True)
            return False
        print(f'[{name}] {" ".join(cmd)}', flush=True)
        start = time.perf_counter()
        with open(osp.join(self.logs, f'{name}.log'), 'w') as log:
            try:
                done = subprocess.run(
                    cmd,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    env=dict(os.environ, **(env or {})))
                status = 'ok' if done.returncode == 0 else f'failed (exit {done.returncode})'
            except subprocess.TimeoutExpired:
                status = f'failed (over {timeout} s)'
        seconds = time.perf_counter() - start
        self.rows.append(dict(step=name, status=status, seconds=seconds, note=''))
        print(f'[{name}] {status} in {seconds:.0f} s', flush=True)
        return status == 'ok'

    def write_summary(self, header: str) -> bool:
        """``summary.md`` (steps, the benchmark tables, the end of each failed step's log) and ``logs.tar.gz``
        in the output folder: few files, as a device run brings back at most 8."""
        lines = [header, '', '| step | status | seconds | note |', '|---|---|---|---|']
        lines += [f"| {r['step']} | {r['status']} | {r['seconds']:.0f} | {r['note']} |" for r in self.rows]
        for row in self.rows:
            text = open(osp.join(self.logs, f"{row['step']}.log")).read() if row['status'] != 'skipped' else ''
            if row['step'].startswith(('fd_step', 'attention', 'memory', 'data_pipeline')):
                tables = [
                    line for line in text.splitlines()
                    if line.startswith(('|', 'machine:', 'matmul', 'largest', 'SDPA', 'one ', 'data ', 'load '))
                ]
                lines += ['', f"### {row['step']}", ''] + tables
            if row['status'].startswith('failed'):
                lines += ['', f"### {row['step']}: end of its log", '', '```'] + text.splitlines()[-40:] + ['```']
        with open(osp.join(self.out, 'summary.md'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        with tarfile.open(osp.join(self.out, 'logs.tar.gz'), 'w:gz') as tar:
            tar.add(self.logs, arcname='logs')
        print('\n'.join(lines), flush=True)
        return all(r['status'] in ('ok', 'skipped') for r in self.rows)


def compare_resume(work: str, out: str) -> int:
    """Exit code of the resume step: CUDA generator states saved, resumed weights equal the uninterrupted."""
    import torch

    from fdclip_mm.checkpoint import read_checkpoint
    from fdclip_mm.engine.rng_state_hook import CHECKPOINT_KEY
    resumed = read_checkpoint(osp.join(work, 'resume', 'epoch_2.pth'))
    whole = read_checkpoint(osp.join(work, 'bf16', 'epoch_2.pth'))
    first = read_checkpoint(osp.join(work, 'resume', 'epoch_1.pth'))
    has_cuda_state = any('cuda' in rank_states for rank_states in first.get(CHECKPOINT_KEY, []))
    diffs = {
        k: (resumed['state_dict'][k].float() - v.float()).abs().max().item()
        for k, v in whole['state_dict'].items()
    }
    worst = max(diffs, key=diffs.get)
    report = dict(cuda_rng_states_saved=has_cuda_state, max_abs_weight_diff=diffs[worst], worst_key=worst)
    with open(osp.join(out, 'resume.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(report)
    # CPU kernels are deterministic; CUDA's attention and reduction kernels need not be (run to run differences
    # after 2 epochs stay far below the weights' scale)
    cuda = torch.cuda.is_available()
    return 0 if (has_cuda_state or not cuda) and diffs[worst] <= (1e-3 if cuda else 1e-6) else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--tiny', action='store_true', help='tiny sizes (the CPU dry run of the test suite)')
    parser.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/gpu_check')
    parser.add_argument('--work', default=None, help='scratch folder (default: a folder beside --out)')
    parser.add_argument('--compare-resume', metavar='WORK', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compare_resume:
        return compare_resume(args.compare_resume, args.out)
    out = osp.abspath(args.out)
    work = osp.abspath(args.work or out.rstrip('/') + '_work')
    os.makedirs(out, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    s = sizes(args.tiny)
    py = sys.executable
    check = Check(out, osp.join(work, 'logs'))
    bench = [
        py,
        osp.join(HERE, 'fd_step.py'), '--device', args.device, '--arch', s['arch'], '--img-size',
        str(s['img']), '--amp', s['amp'], '--threads',
        str(s['threads']), '--warmup',
        str(s['warmup']), '--iters',
        str(s['iters']), '--compile-backend', s['compile_backend']
    ]
    bench += ['--peak-size', str(s['peak'])] if s['peak'] else []

    check.step('env', [
        py, '-c', 'import torch, mmengine, mmcv, mmpretrain, fdclip_mm; '
        'print(torch.__version__, torch.version.cuda, torch.cuda.is_available() and '
        'torch.cuda.get_device_name(), mmengine.__version__, mmcv.__version__, '
        'mmpretrain.__version__)'
    ], 60)
    check.step('flex_tests', [
        py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-k',
        'flex' if args.device == 'cuda' else 'flex_attention_gradients', 'tests/models/backbones/test_attention.py'
    ], 240)
    for index, batch in enumerate(s['batches']):
        compile_cases = ['blocks', 'model'] if index == 0 else ['blocks']
        check.step(
            f'fd_step_b{batch}', bench +
            ['--batch',
             str(batch), '--compile', *compile_cases, '--out',
             osp.join(out, f'fd_step_b{batch}.json')], 300)
    check.step('attention', [
        py,
        osp.join(HERE, 'attention.py'), '--device', args.device, '--arch', s['arch'], '--img-size',
        str(s['img']), '--batch',
        str(s['batches'][0]), '--amp', s['amp'], '--threads',
        str(s['threads']), '--out',
        osp.join(out, 'attention.json')
    ], 180)
    check.step('memory', [
        py,
        osp.join(HERE, 'memory.py'), '--device', args.device, '--arch', s['arch'], '--img-size',
        str(s['img']), '--batch',
        str(s['batches'][0]), '--amp', s['amp'], '--threads',
        str(s['threads']), '--cases', 'fd_full', 'fd_full_cp', 'fd_full_compiled', '--out',
        osp.join(out, 'memory.json')
    ], 240)

    config = write_train_config(work, s)
    train = [py, osp.join(REPO, 'tools', 'train.py'), config]
    amp = ['--amp'] if args.device == 'cuda' else []
    fp16 = ['--cfg-options', 'optim_wrapper.dtype=float16'] if args.device == 'cuda' else []
    check.step('train_fp16', train + ['--work-dir', osp.join(work, 'fp16')] + amp + fp16, 240)
    check.step('train_bf16', train + ['--work-dir', osp.join(work, 'bf16')] + amp, 240)
    check.step('resume_first_epoch',
               train + ['--work-dir', osp.join(work, 'resume')] + amp + ['--cfg-options', 'train_cfg.max_epochs=1'],
               240)
    if check.step('resume', train + ['--work-dir', osp.join(work, 'resume'), '--resume'] + amp, 240):
        check.step('resume_equals_uninterrupted',
                   [py, osp.abspath(__file__), '--compare-resume', work, '--out', out], 60)
    dist = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config, '1']
    port = dict(PORT=str(29500 + os.getpid() % 1000), PYTHON=py)
    check.step('torchrun_ddp', dist + ['--work-dir', osp.join(work, 'ddp')] + amp, 240, env=port)
    fsdp2 = [
        '--cfg-options', 'runner_type=fdclip_mm.CheckedFlexibleRunner', 'strategy.type=fdclip_mm.FSDP2Strategy',
        'model_wrapper_cfg=None'
    ]
    check.step('torchrun_fsdp2', dist + ['--work-dir', osp.join(work, 'fsdp2')] + amp + fsdp2, 240, env=port)
    images = osp.join(REPO, 'data', 'benchmark_images')
    if osp.isdir(images):
        sets = [f'{name}={osp.join(images, name, "*.jpg")}' for name in ('imagenet_sized', 'large')]
    else:
        write_images(osp.join(work, 'jpegs'), 8 if args.tiny else 64, 64 if args.tiny else 448, seed=2)
        sets = [f'generated={osp.join(work, "jpegs", "*.jpg")}']
    check.step('data_pipeline', [
        py,
        osp.join(HERE, 'data_pipeline.py'), '--device', args.device, '--batch',
        str(s['train_batch'] if args.tiny else 256), '--repeats', '1' if args.tiny else '3', '--passes', '1', '--out',
        osp.join(work, 'logs', 'data_pipeline.json'), '--sets', *sets
    ], 150)
    gpu_decode = write_train_config(work, s, decode_on='device')
    check.step('train_gpu_decode',
               [py, osp.join(REPO, 'tools', 'train.py'), gpu_decode, '--work-dir',
                osp.join(work, 'gpu_decode')] + amp + ['--cfg-options', 'train_cfg.max_epochs=1'], 150)
    check.step(
        'mask_rcnn', [
            py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/tools/test_mmdet_project.py', '-k',
            'test_mmdet_train_tool_trains_fdclip_model'
        ],
        300,
        skip=mask_rcnn_skip_reason(args.device))
    device = f'{args.device}{" (tiny dry run)" if args.tiny else ""}'
    ok = check.write_summary(f'# GPU check, {time.strftime("%Y-%m-%d %H:%M")}, device {device}')
    return 0 if ok else 1


def mask_rcnn_skip_reason(device: str) -> Optional[str]:
    """Why the Mask R-CNN step cannot run here, or None."""
    if device != 'cuda':
        return 'needs mmcv built with CUDA ops'
    try:
        import mmdet  # noqa: F401
        from mmcv.ops import get_compiling_cuda_version
    except ImportError as err:
        return f'mmdet / mmcv ops not installed ({err})'
    if get_compiling_cuda_version() == 'not available':
        return 'mmcv was built without CUDA ops (scripts/setup_env.sh builds them on a CUDA machine)'
    return None


if __name__ == '__main__':
    sys.exit(main())
