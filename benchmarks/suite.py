"""The whole benchmark suite in one run: training-step speed (ours vs stock, fp32 and bf16, masked, student
alone, MFU), peak memory with and without activation checkpointing, and the data pipeline per worker.

Runs ``fd_step.py``, ``memory.py`` and ``data_pipeline.py`` one after the other with the same settings (each
prints its own table), then saves all their results in one JSON file.

Examples:
    # the 2-core CPU numbers of benchmarks/README.md
    python benchmarks/suite.py --arch base --img-size 224 --batch 8 --threads 2 --amp none bf16
    # one GPU (benchmarks/gpu_check.sh runs this and more)
    python benchmarks/suite.py --device cuda --arch base --img-size 224 --batch 256 --amp bf16 \\
        --warmup 5 --iters 20 --threads 16
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

HERE = osp.dirname(osp.abspath(__file__))


def run(script: str, options: list, out: str) -> dict:
    """Runs one benchmark script (its table goes to our stdout) and returns its saved JSON."""
    subprocess.run([sys.executable, osp.join(HERE, script), *options, f'--out={out}'], check=True)
    with open(out) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='base', choices=['tiny', 'small', 'base', 'large'])
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch', type=int, default=16)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--amp', nargs='+', default=['none', 'bf16'])
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--compile', action='store_true', help='add the compiled cases to the step table')
    parser.add_argument('--skip', nargs='*', default=[], choices=['step', 'memory', 'data'])
    parser.add_argument('--work-dir', default='work_dirs/benchmarks')
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    common = [
        f'--arch={args.arch}', f'--img-size={args.img_size}', f'--patch={args.patch}', f'--batch={args.batch}',
        f'--threads={args.threads}', f'--device={args.device}'
    ]
    results = {}
    if 'step' not in args.skip:
        print('== training step ==', flush=True)
        step = common + ['--amp', *args.amp, f'--warmup={args.warmup}', f'--iters={args.iters}']
        results['fd_step'] = run('fd_step.py', step + (['--compile'] if args.compile else []),
                                 osp.join(args.work_dir, 'fd_step.json'))
    if 'memory' not in args.skip:
        print('== peak memory of one step ==', flush=True)
        results['memory'] = run('memory.py', common + [f'--amp={args.amp[-1]}'], osp.join(args.work_dir, 'memory.json'))
    if 'data' not in args.skip:
        print('== data pipeline, one worker ==', flush=True)
        results['data_pipeline'] = run('data_pipeline.py', ['--threads=1'], osp.join(args.work_dir, 'data.json'))
    out = osp.join(args.work_dir, 'suite.json')
    with open(out, 'w') as f:
        json.dump(dict(args=vars(args), **results), f, indent=2)
    print(f'saved {out}')


if __name__ == '__main__':
    main()
