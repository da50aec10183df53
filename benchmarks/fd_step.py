"""Times distillation training steps side by side, in one process: ours (full input, masked input, optionally
compiled), the same math assembled from stock mmpretrain parts, and our student alone, for each precision.

The stock reference is what a user would assemble without this package: mmpretrain's ``BEiTPretrainViT``
student (shared RPB, layer scale 0.1) and a CLIP-form mmpretrain ``VisionTransformer`` teacher (pre-norm,
QuickGELU) under ``no_grad``, a LayerNorm target, a Linear projector, SmoothL1 with beta 2 and
``torch.optim.AdamW`` with its defaults. Ours is :class:`FeatureDistiller` as our configs build it, with the
teacher's weights held in bf16 when the step runs under bf16 autocast (``teacher.dtype``) and a fused AdamW.

Each step is a full optimizer step (teacher forward, student forward/backward, grad clipping, AdamW) on random
images. MFU is the FLOP/s of a case (matrix products and attention, counted by ``FlopCounterMode``) over the
best FLOP/s of a large matrix product measured in the same run and precision. Cases take turns, so compare
the ratios: a shared machine's absolute numbers move between runs.

Example (the numbers in benchmarks/README.md):
    python benchmarks/fd_step.py --arch base --img-size 224 --batch 8 --threads 2 --amp none bf16
"""
import argparse
import copy
import os.path as osp
import tempfile
import time
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models import BEiTPretrainViT, VisionTransformer
from torch import nn

from common import (AMP_DTYPES, WIDTHS, add_step_args, count_flops, machine_facts, machine_line, matmul_peak_flops,
                    print_table, save_results, summarize, time_interleaved)
from fdclip_mm.engine import compile_blocks
from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.teachers import teacher_config
from fdclip_mm.registry import MODELS


def random_clip_checkpoint(path: str, width: int, layers: int, patch: int, image: int) -> None:
    """An OpenAI-layout CLIP visual tower with random weights (the benchmark needs shapes, not skills)."""
    grid = image // patch
    sd = {
        'conv1.weight': torch.randn(width, 3, patch, patch) * .02,
        'class_embedding': torch.randn(width) * .02,
        'positional_embedding': torch.randn(grid * grid + 1, width) * .02,
        'ln_pre.weight': torch.ones(width),
        'ln_pre.bias': torch.zeros(width),
        'ln_post.weight': torch.ones(width),
        'ln_post.bias': torch.zeros(width)
    }
    for i in range(layers):
        p = f'transformer.resblocks.{i}.'
        for name, shape in (('attn.in_proj_weight', (3 * width, width)), ('attn.out_proj.weight', (width, width)),
                            ('mlp.c_fc.weight', (4 * width, width)), ('mlp.c_proj.weight', (width, 4 * width))):
            sd[p + name] = torch.randn(*shape) * .02
        for name, n in (('attn.in_proj_bias', 3 * width), ('attn.out_proj.bias', width), ('mlp.c_fc.bias', 4 * width),
                        ('mlp.c_proj.bias', width), ('ln_1.bias', width), ('ln_2.bias', width)):
            sd[p + name] = torch.zeros(n)
        sd[p + 'ln_1.weight'] = torch.ones(width)
        sd[p + 'ln_2.weight'] = torch.ones(width)
    torch.save({'visual.' + k: v.half() for k, v in sd.items()}, path)


def clip_teacher_cfg(ckpt: str, width: int, layers: int, patch: int, img_size: int, dtype: Optional[str]) -> dict:
    """The ``BackboneTeacher`` config of a :func:`random_clip_checkpoint` file (OpenAI CLIP form)."""
    arch = dict(embed_dims=width, num_layers=layers, num_heads=width // 64, feedforward_channels=4 * width)
    return teacher_config('clip', ckpt, arch=arch, patch_size=patch, img_size=img_size, dtype=dtype)


def make_step(params,
              loss_fn: Callable[[], torch.Tensor],
              amp: str,
              device: str,
              adamw: str = 'default') -> Callable[[], None]:
    """One optimizer step: autocast forward, backward, grad clipping at 3.0, AdamW, zeroing."""
    params = [p for p in params if p.requires_grad]
    options = dict(fused=True) if adamw == 'fused' else dict(foreach=True) if adamw == 'foreach' else {}
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, **options)
    dtype = AMP_DTYPES[amp]

    def step() -> None:
        with torch.autocast(device.split(':')[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def stock_mmpretrain_loss(arch: str, img_size: int, patch: int, teacher_dims: int) -> Tuple[nn.Module, Callable]:
    """The FD loss built from stock mmpretrain modules; returns (module to optimise, loss function of inputs)."""
    from fdclip_mm.models.backbones import FDViT
    arch = dict(FDViT.arch_zoo[arch])
    student = BEiTPretrainViT(
        arch=arch,
        img_size=img_size,
        patch_size=patch,
        drop_path_rate=0.2,
        out_type='raw',
        final_norm=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        norm_cfg=dict(type='LN', eps=1e-6))
    teacher = VisionTransformer(
        arch=arch,
        img_size=img_size,
        patch_size=patch,
        pre_norm=True,
        out_type='raw',
        final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))
    teacher.requires_grad_(False)
    teacher.eval()  # mmpretrain's backbones return None from train()/eval()
    module = nn.ModuleDict(
        dict(student=student, projector=nn.Linear(student.embed_dims, teacher_dims), teacher=teacher))

    def loss(inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            target = F.layer_norm(teacher(inputs['teachers'][0])[-1], (teacher_dims, ))
        pred = module['projector'](student(inputs['student'], None)[-1])
        return F.smooth_l1_loss(pred.float(), target.float(), beta=2.0)

    return module, loss


def build_distiller(args,
                    ckpt: str,
                    amp: str,
                    with_cp: bool = False,
                    teacher_dtype: Optional[str] = 'auto') -> FeatureDistiller:
    """Our distiller as the configs build it; ``teacher_dtype='auto'`` holds the teacher in the AMP dtype."""
    if teacher_dtype == 'auto':
        teacher_dtype = {'bf16': 'bfloat16', 'fp16': 'float16'}.get(amp)
    student = dict(
        type='FDViT',
        arch=args.arch,
        img_size=args.img_size,
        patch_size=args.patch,
        drop_path_rate=0.2,
        with_cp=with_cp)
    width, layers = WIDTHS[args.arch]
    teacher = clip_teacher_cfg(ckpt, width, layers, args.patch, args.img_size, teacher_dtype)
    return FeatureDistiller(student=student, teacher=teacher)


def build_cases(args, ckpt: str, inputs: Dict[str, torch.Tensor]) -> Tuple[Dict[str, Callable], dict]:
    """Step functions for every case and precision, and the compile times of compiled cases."""
    width, _ = WIDTHS[args.arch]
    cases: Dict[str, Callable] = {}
    compile_s: Dict[str, float] = {}
    stock, stock_loss = stock_mmpretrain_loss(args.arch, args.img_size, args.patch, width)
    stock.to(args.device)
    ours = build_distiller(args, ckpt, 'none').to(args.device).train()
    width, layers = WIDTHS[args.arch]
    teachers = {
        amp:
        ours.teacher if AMP_DTYPES[amp] is None else MODELS.build(
            clip_teacher_cfg(ckpt, width, layers, args.patch, args.img_size, {
                'bf16': 'bfloat16',
                'fp16': 'float16'
            }[amp])).to(args.device)
        for amp in args.amp
    }

    def distill(teacher: nn.Module,
                mask_ratio: float,
                model: nn.Module = ours,
                owner: nn.Module = ours) -> Callable[[], torch.Tensor]:

        def loss() -> torch.Tensor:
            owner.branches['t0'].teacher, owner.mask_ratio = teacher, mask_ratio
            return model(inputs, mode='loss')['loss']

        return loss

    compiled = {}
    if 'blocks' in args.compile:  # what compile=True does in our runners: each block compiled
        blocks = copy.deepcopy(ours)
        compile_blocks(blocks, dict(backend=args.compile_backend))
        block_teachers = {amp: copy.deepcopy(teacher) for amp, teacher in teachers.items()}
        for teacher in block_teachers.values():
            compile_blocks(teacher, dict(backend=args.compile_backend))
        compiled['fd_full_compiled_blocks'] = (blocks, blocks, block_teachers)
    if 'model' in args.compile:  # the whole distiller as one graph, for comparison
        compiled['fd_full_compiled_model'] = (torch.compile(ours, backend=args.compile_backend), ours, teachers)
    for amp in args.amp:
        tag = '' if len(args.amp) == 1 else f'[{amp}]'
        teacher = teachers[amp]
        cases['stock_mmpretrain' + tag] = make_step(stock.parameters(), lambda: stock_loss(inputs), amp, args.device)
        cases['fd_full' + tag] = make_step(ours.parameters(), distill(teacher, 0.), amp, args.device, args.adamw)
        cases[f'fd_masked_{1 - args.mask_ratio:.0%}' + tag] = make_step(ours.parameters(),
                                                                        distill(teacher, args.mask_ratio), amp,
                                                                        args.device, args.adamw)
        cases['student_only' +
              tag] = make_step(ours.student.parameters(),
                               lambda: ours.student.forward_features(inputs['student']).float().square().mean(), amp,
                               args.device, args.adamw)
        for name, (model, owner, case_teachers) in compiled.items():
            step = make_step(owner.parameters(), distill(case_teachers[amp], 0., model, owner), amp, args.device,
                             args.adamw)
            start = time.perf_counter()
            step()
            compile_s[name + tag] = time.perf_counter() - start
            cases[name + tag] = step
    return cases, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_args(parser)
    parser.add_argument('--amp', nargs='+', default=['bf16'], choices=sorted(AMP_DTYPES))
    parser.add_argument(
        '--adamw',
        default='fused',
        choices=['fused', 'foreach', 'default'],
        help='AdamW implementation of our cases (stock keeps torch\'s default)')
    parser.add_argument('--mask-ratio', type=float, default=0.75)
    parser.add_argument(
        '--compile',
        nargs='*',
        choices=['blocks', 'model'],
        default=None,
        help='add compiled fd_full cases: each block (what compile=True does: "blocks") and the '
        'whole model ("model"); --compile alone adds both')
    parser.add_argument('--compile-backend', default='inductor', help='torch.compile backend of compiled cases')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument(
        '--peak-size',
        type=int,
        default=None,
        help='side of the matrix product that measures the peak (default 8192 on CUDA, 2048 on CPU; '
        'use 512 on a CPU without native bf16, where a 2048^3 bf16 product takes a minute)')
    parser.add_argument('--out', default='work_dirs/benchmarks/fd_step.json')
    args = parser.parse_args()
    args.compile = [] if args.compile is None else args.compile or ['blocks', 'model']
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, layers = WIDTHS[args.arch]

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = osp.join(tmp, 'clip.pth')
        random_clip_checkpoint(ckpt, width, layers, args.patch, args.img_size)
        images = torch.randint(0, 256, (args.batch, 3, args.img_size, args.img_size), dtype=torch.uint8)
        preprocess = build_distiller(args, ckpt, 'none').data_preprocessor.to(args.device)
        inputs = preprocess(dict(inputs=images.to(args.device)))['inputs']
        cases, compile_s = build_cases(args, ckpt, inputs)
    # compiled steps run kernels that FLOP counting cannot see: they do the math of fd_full
    flops = {name: count_flops(step) for name, step in cases.items() if 'compiled' not in name}
    for name in cases:
        if 'compiled' in name:
            flops[name] = flops['fd_full' + name[name.index('['):] if '[' in name else 'fd_full']
    size = args.peak_size or (8192 if args.device.startswith('cuda') else 2048)
    peaks = {amp: matmul_peak_flops(AMP_DTYPES[amp] or torch.float32, args.device, size) for amp in args.amp}
    times = time_interleaved(cases, args.warmup, args.iters, args.device)

    results: Dict[str, dict] = {}
    for name, case_times in times.items():
        amp = next((a for a in args.amp if name.endswith(f'[{a}]')), args.amp[0])
        row = summarize(case_times, args.batch)
        row.update(
            case=name,
            gflop_per_step=flops[name] / 1e9,
            mfu=flops[name] / row['median_s'] / peaks[amp],
            compile_s=compile_s.get(name))
        results[name] = row
    for amp in args.amp:
        tag = '' if len(args.amp) == 1 else f'[{amp}]'
        full = results['fd_full' + tag]
        for name, row in results.items():
            if name.endswith(tag):
                row['time_vs_fd_full'] = row['median_s'] / full['median_s']
                row['speedup_vs_stock'] = results['stock_mmpretrain' + tag]['median_s'] / row['median_s']
    print(machine_line(machine_facts(args.device, args.threads)))
    print_table(
        list(results.values()),
        ['case', 'median_s', 'img_per_s', 'time_vs_fd_full', 'speedup_vs_stock', 'gflop_per_step', 'mfu', 'compile_s'])
    print('matmul peak GFLOP/s: ' + ', '.join(f'{a} {p / 1e9:.0f}' for a, p in peaks.items()))
    save_results(args, results=results, matmul_peak_flops=peaks)


if __name__ == '__main__':
    main()
