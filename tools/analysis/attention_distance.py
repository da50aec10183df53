"""Mean attention distance per head and layer (supplement Fig. 1) of one or several models.

Example (DINOv2 teacher vs the demo's FD student, side by side)::

    python tools/analysis/attention_distance.py data/demo/images/val --out-dir work_dirs/analysis \
        --model DINOv2 configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py part=teacher \
        --model FD-student configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py work_dirs/demo/epoch_40.pth

Writes ``attention_distance.csv`` (model, layer, head, distance_px), ``attention_distance.json`` (per-model
arrays and per-layer summaries) and ``attention_distance.png`` (one panel per model) into ``--out-dir``.
"""
import argparse
import os
import os.path as osp

from attention_distance_files import write_distance_csv, write_distance_json  # the modules beside this script
from attention_plots import plot_attention_distances
from model_spec import add_analysis_args, analyse_specs, parse_model_spec


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_analysis_args(parser)
    parser.add_argument(
        '--no-renormalize',
        action='store_true',
        help='keep the probability mass on the class token (counts as distance 0)')
    parser.add_argument('--name', default='attention_distance', help='output file stem')
    parser.add_argument('--title', default=None, help='figure title')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Runs the analysis; returns the paths written."""
    args = parse_args(argv)
    specs = [parse_model_spec(tokens) for tokens in args.model]
    stats = analyse_specs(
        specs, args.images, args.num_images, args.img_size, args.batch_size, renormalize=not args.no_renormalize)
    os.makedirs(args.out_dir, exist_ok=True)
    distances = {label: s.distances.numpy() for label, s in stats.items()}
    meta = {
        label:
        dict(grid=list(s.grid), patch_size=s.patch_size, num_images=s.num_images, renormalized=not args.no_renormalize)
        for label, s in stats.items()
    }
    stem = osp.join(args.out_dir, args.name)
    paths = dict(
        csv=write_distance_csv(distances, stem + '.csv'),
        json=write_distance_json(distances, meta, stem + '.json'),
        png=plot_attention_distances(distances, stem + '.png', args.title))
    for label, dist in distances.items():
        print(f'{label}: per-layer head distances (px) min/mean/max: ' +
              ', '.join(f'L{i} {d.min():.0f}/{d.mean():.0f}/{d.max():.0f}' for i, d in enumerate(dist)))
    print('\n'.join(f'{kind}: {path}' for kind, path in paths.items()))
    return paths


if __name__ == '__main__':
    main()
