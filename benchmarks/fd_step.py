"""Times distillation training steps side by side, in one process: ours (full input, masked input), the same
math assembled from stock mmpretrain parts, and our student alone.

The stock reference is what a user would assemble without this package: mmpretrain's ``BEiTPretrainViT``
student (shared RPB, layer scale 0.1) and a CLIP-form mmpretrain ``VisionTransformer`` teacher (pre-norm,
QuickGELU) under ``no_grad``, a LayerNorm target, a Linear projector and SmoothL1 with beta 2.

Each step is a full optimizer step (teacher forward, student forward/backward, AdamW, grad clipping) on
random images, built from our real modules with a random CLIP-architecture teacher. The ratios are what to
compare: this machine is shared, so absolute numbers move between runs.

Example (the numbers in benchmarks/README.md):
    python benchmarks/fd_step.py --arch base --img-size 224 --batch 8 --threads 2 --amp bf16
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from mmpretrain.models import BEiTPretrainViT, VisionTransformer
from torch import nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from fdclip_mm.models.algorithms import FeatureDistiller  # noqa: E402
from fdclip_mm.models.backbones import FDViT  # noqa: E402

WIDTHS = {'tiny': (192, 12), 'small': (384, 12), 'base': (768, 12), 'large': (1024, 24)}


def random_clip_checkpoint(path: str, width: int, layers: int, patch: int, image: int) -> None:
    """An OpenAI-layout CLIP visual tower with random weights (the benchmark needs shapes, not skills)."""
    grid = image // patch
    sd = {'conv1.weight': torch.randn(width, 3, patch, patch) * .02, 'class_embedding': torch.randn(width) * .02,
          'positional_embedding': torch.randn(grid * grid + 1, width) * .02, 'ln_pre.weight': torch.ones(width),
          'ln_pre.bias': torch.zeros(width), 'ln_post.weight': torch.ones(width), 'ln_post.bias': torch.zeros(width)}
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


def time_interleaved(steps: Dict[str, Callable[[], None]], warmup: int, iters: int) -> Dict[str, List[float]]:
    """Step times per case, the cases taking turns so that load changes on a shared machine hit all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def make_step(module: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], amp: str) -> Callable[[], None]:
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

    def step() -> None:
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp == 'bf16'):
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def stock_mmpretrain_loss(arch: str, img_size: int, patch: int, teacher_dims: int) -> Callable:
    """The FD loss built from stock mmpretrain modules; returns (module to optimise, loss function of inputs)."""
    arch = dict(FDViT.arch_zoo[arch])
    student = BEiTPretrainViT(arch=arch, img_size=img_size, patch_size=patch, drop_path_rate=0.2, out_type='raw',
                              final_norm=True, use_abs_pos_emb=False, use_rel_pos_bias=False,
                              use_shared_rel_pos_bias=True, layer_scale_init_value=0.1,
                              norm_cfg=dict(type='LN', eps=1e-6))
    teacher = VisionTransformer(arch=arch, img_size=img_size, patch_size=patch, pre_norm=True, out_type='raw',
                                final_norm=True, norm_cfg=dict(type='LN', eps=1e-5),
                                layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))
    teacher.requires_grad_(False)
    teacher.eval()  # mmpretrain's backbones return None from train()/eval()
    module = nn.ModuleDict(dict(student=student, projector=nn.Linear(student.embed_dims, teacher_dims)))

    def loss(inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            target = F.layer_norm(teacher(inputs['teacher'])[-1], (teacher_dims, ))
        pred = module['projector'](student(inputs['student'], None)[-1])
        return F.smooth_l1_loss(pred.float(), target.float(), beta=2.0)

    return module, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='base', choices=sorted(WIDTHS))
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch', type=int, default=16)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--amp', default='bf16', choices=['bf16', 'none'])
    parser.add_argument('--mask-ratio', type=float, default=0.75)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--out', default='work_dirs/benchmarks/fd_step.json')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, layers = WIDTHS[args.arch]

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = osp.join(tmp, 'clip.pth')
        random_clip_checkpoint(ckpt, width, layers, args.patch, args.img_size)
        student = dict(type='FDViT', arch=args.arch, img_size=args.img_size, patch_size=args.patch, drop_path_rate=0.2)
        full = FeatureDistiller(student=student, teacher=dict(type='CLIPTeacher', checkpoint=ckpt)).train()
        masked = FeatureDistiller(student=student, teacher=dict(type='CLIPTeacher', checkpoint=ckpt),
                                  mask_ratio=args.mask_ratio).train()
    alone = FDViT(arch=args.arch, img_size=args.img_size, patch_size=args.patch, drop_path_rate=0.2).train()

    images = torch.randint(0, 256, (args.batch, 3, args.img_size, args.img_size), dtype=torch.uint8)
    inputs = full.data_preprocessor(dict(inputs=images))['inputs']
    stock, stock_loss = stock_mmpretrain_loss(args.arch, args.img_size, args.patch, width)
    cases = {
        'stock_mmpretrain': make_step(stock, lambda: stock_loss(inputs), args.amp),
        'fd_full': make_step(full, lambda: full(inputs, mode='loss')['loss'], args.amp),
        f'fd_masked_{1 - args.mask_ratio:.0%}': make_step(masked, lambda: masked(inputs, mode='loss')['loss'], args.amp),
        'student_only': make_step(alone, lambda: alone.forward_features(inputs['student']).float().square().mean(),
                                  args.amp),
    }
    results: Dict[str, dict] = {}
    for name, times in time_interleaved(cases, args.warmup, args.iters).items():
        median = statistics.median(times)
        results[name] = dict(median_s=median, img_per_s=args.batch / median, times_s=times)
        print(f'{name:>16}: {median:.3f} s/step  {args.batch / median:.2f} img/s', flush=True)
    base = results['fd_full']['median_s']
    ratios = {f'{name}/fd_full': r['median_s'] / base for name, r in results.items() if name != 'fd_full'}
    for name, ratio in ratios.items():
        print(f'{name:>28}: {ratio:.2f}x the step time')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(args=vars(args), results=results, ratios=ratios, torch=torch.__version__), f, indent=2)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
