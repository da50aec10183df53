"""Times one biased attention layer (our :class:`Attention` with a shared relative position bias) per backend:
explicit products, SDPA with the bias as a float mask, and FlexAttention with the bias as a ``score_mod``;
forward + backward (training) and forward only (inference), per precision. Also reports, on CUDA, which of
SDPA's kernels accept the biased call (FlashAttention does not take a float mask), and each backend's largest
difference from the explicit path in the output and (where it has a backward) in the input's gradient.

FlexAttention has no backward on CPU in torch 2.14: there it is timed for inference only. Cases take turns.

Example:
    python benchmarks/attention.py --arch base --img-size 224 --batch 8 --threads 2 --amp none bf16
"""
import argparse
from typing import Callable, Dict

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from common import (AMP_DTYPES, WIDTHS, add_step_args, machine_facts, machine_line, print_table, save_results,
                    summarize, time_interleaved)
from fdclip_mm.models.backbones.attention import Attention
from fdclip_mm.models.backbones.rel_pos_bias import RelativePositionBias

BACKENDS = ('explicit', 'sdpa', 'flex')


def sdpa_kernels_accepting_a_float_mask(q: torch.Tensor, mask: torch.Tensor) -> Dict[str, bool]:
    """Which SDPA kernels run ``q`` attending itself with an additive float ``mask`` (CUDA only)."""
    accepted = {}
    for kernel in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                   SDPBackend.MATH):
        try:
            with sdpa_kernel([kernel]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
            accepted[kernel.name] = True
        except RuntimeError:
            accepted[kernel.name] = False
    return accepted


def make_case(attn: Attention, x: torch.Tensor, bias: torch.Tensor, amp: str, train: bool) -> Callable[[], None]:
    dtype = AMP_DTYPES[amp]
    device = x.device.type

    def step() -> None:
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None), \
                torch.set_grad_enabled(train):
            out = attn(x, bias)
        if train:
            out.float().square().mean().backward()

    return step


def compare(attns: Dict[str, Attention], x: torch.Tensor, bias: torch.Tensor, train_backends) -> Dict[str, dict]:
    """Largest differences of each backend from the explicit path (float32): output, and input gradient."""
    results = {}
    grads = {}
    for name, attn in attns.items():
        xg = x.detach().clone().requires_grad_(name in train_backends)
        with torch.set_grad_enabled(name in train_backends):
            out = attn(xg, bias)
        if name in train_backends:
            out.square().mean().backward()
            grads[name] = xg.grad
        results[name] = dict(out=out.detach())
    reference = results['explicit']['out']
    return {
        name:
        dict(
            max_abs_out=(r['out'] - reference).abs().max().item(),
            max_abs_grad=(grads[name] - grads['explicit']).abs().max().item() if name in grads else None)
        for name, r in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_args(parser)
    parser.add_argument('--amp', nargs='+', default=['bf16'], choices=sorted(AMP_DTYPES))
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--out', default='work_dirs/benchmarks/attention.json')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    width, _ = WIDTHS[args.arch]
    heads = width // 64
    grid = (args.img_size // args.patch, ) * 2
    tokens = 1 + grid[0] * grid[1]
    device = torch.device(args.device)
    bias_table = RelativePositionBias(grid, heads).to(device)
    torch.nn.init.trunc_normal_(bias_table.relative_position_bias_table, std=0.02)
    bias = bias_table(grid).detach()
    x = torch.randn(args.batch, tokens, width, device=device)
    attns = {name: Attention(width, heads, backend=name).to(device) for name in BACKENDS}
    for attn in attns.values():
        attn.load_state_dict(attns['explicit'].state_dict())
    train_backends = [name for name in BACKENDS if name != 'flex' or device.type == 'cuda']

    cases = {}
    for amp in args.amp:
        for name in BACKENDS:
            if name in train_backends:
                cases[f'{name} fwd+bwd [{amp}]'] = make_case(attns[name], x.clone().requires_grad_(), bias, amp, True)
            cases[f'{name} fwd [{amp}]'] = make_case(attns[name], x, bias, amp, False)
    times = time_interleaved(cases, args.warmup, args.iters, args.device)
    rows = []
    for case, case_times in times.items():
        row = summarize(case_times, args.batch)
        reference = times[case.replace(case.split()[0], 'explicit', 1)]
        row.update(case=case, vs_explicit=summarize(reference, args.batch)['median_s'] / row['median_s'])
        rows.append(row)
    differences = compare(attns, x.detach(), bias, train_backends)
    kernels = sdpa_kernels_accepting_a_float_mask(
        x.new_empty(args.batch, heads, tokens, 64, dtype=torch.bfloat16).normal_(), bias.to(
            torch.bfloat16)) if device.type == 'cuda' else None

    print(machine_line(machine_facts(args.device, args.threads)))
    print(f'one attention layer: batch {args.batch}, {tokens} tokens, width {width}, {heads} heads, shared RPB')
    print_table(rows, ['case', 'median_s', 'img_per_s', 'vs_explicit'])
    print('largest difference from the explicit path (float32): ' +
          ', '.join(f"{name} out {d['max_abs_out']:.2e}" +
                    (f" grad {d['max_abs_grad']:.2e}" if d['max_abs_grad'] is not None else '')
                    for name, d in differences.items()))
    if kernels is not None:
        print('SDPA kernels that accept the biased call (bf16): ' + ', '.join(f'{k} {"yes" if ok else "no"}'
                                                                              for k, ok in kernels.items()))
    save_results(args, results=rows, differences=differences, sdpa_kernels=kernels)


if __name__ == '__main__':
    main()
