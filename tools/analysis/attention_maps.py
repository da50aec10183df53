"""Average attention map of every layer (supplement Figs. 2-4) of one or several models.

Example::

    python tools/analysis/attention_maps.py data/demo/images/val --out-dir work_dirs/analysis \
        --model FD-student configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py work_dirs/demo/epoch_40.pth

Per model, writes ``<stem>_<label>.npy`` (layers x N x N float32, patches indexed top-left to bottom-right,
CLS dropped, averaged over heads and images) and ``<stem>_<label>.png`` (all layers, layer 0 top-left).
"""
import argparse
import os
import os.path as osp
import re

import numpy as np

from attention_plots import plot_attention_maps  # the modules beside this script
from model_spec import add_analysis_args, analyse_specs, parse_model_spec


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_analysis_args(parser)
    parser.add_argument('--ncols', type=int, default=4, help='maps per row of the grid')
    parser.add_argument('--name', default='attention_maps', help='output file stem')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Runs the analysis; returns ``{label: {'npy': path, 'png': path}}``."""
    args = parse_args(argv)
    specs = [parse_model_spec(tokens) for tokens in args.model]
    stats = analyse_specs(specs, args.images, args.num_images, args.img_size, args.batch_size)
    os.makedirs(args.out_dir, exist_ok=True)
    written = {}
    for label, s in stats.items():
        stem = osp.join(args.out_dir, f'{args.name}_{re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_")}')
        maps = s.maps.numpy().astype(np.float32)
        np.save(stem + '.npy', maps)
        title = f'{label}: average attention maps ({s.grid[0]}x{s.grid[1]} patches, {s.num_images} images)'
        written[label] = dict(npy=stem + '.npy', png=plot_attention_maps(maps, stem + '.png', title, args.ncols))
        print(f'{label}: {written[label]["npy"]}, {written[label]["png"]}')
    return written


if __name__ == '__main__':
    main()
