"""Frozen features of one or several models: weighted k-NN and a linear probe on pooled patch tokens.

Example (the reproduction's teacher at two input sizes, 1,000 labelled training images vs the validation split)::

    python tools/analysis/frozen_features.py --data-prefix data/fashion_mnist/images \
        --train-ann data/fashion_mnist/meta/labelled_1k.txt --test-ann data/fashion_mnist/meta/val.txt \
        --model DINOv2-56 configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist.py part=teacher \
        --out work_dirs/analysis/frozen_features.json

Each model's input is resized and centre-cropped to its own input size and normalised with its own statistics
(see tools/analysis/attention_distance.py for the ``--model`` syntax). Writes a JSON file
``{label: {knn_top1, linear_top1, k, dims, num_train, num_test}}`` and prints a table.
"""
import argparse
import json
import os
import os.path as osp
import time

from fdclip_mm.analysis.attention_model import input_statistics
from fdclip_mm.analysis.frozen_features import evaluate_frozen, pooled_features, read_annotations
from fdclip_mm.analysis.image_folder import iter_image_batches
from model_builder import build_analysis_module  # the modules beside this script
from model_spec import SPEC_HELP, module_img_size, parse_model_spec


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', nargs='+', action='append', required=True, metavar='TOKEN', help=SPEC_HELP)
    parser.add_argument('--data-prefix', required=True, help='folder the annotation paths are relative to')
    parser.add_argument('--train-ann', required=True, help='annotation file of the labelled training images')
    parser.add_argument('--test-ann', required=True, help='annotation file of the evaluation images')
    parser.add_argument('--num-train', type=int, default=None, help='first N training images (default: all)')
    parser.add_argument('--num-test', type=int, default=None, help='first N evaluation images (default: all)')
    parser.add_argument('--k', type=int, default=20, help='neighbours of the k-NN vote')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--out', required=True, help='JSON file to write')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    train_paths, train_labels = read_annotations(args.train_ann, args.data_prefix, args.num_train)
    test_paths, test_labels = read_annotations(args.test_ann, args.data_prefix, args.num_test)
    results = {}
    for spec in (parse_model_spec(tokens) for tokens in args.model):
        start = time.time()
        model, module = build_analysis_module(spec.config, spec.checkpoint, spec.part, spec.cfg_options)
        size = module_img_size(module)
        mean, std = input_statistics(model, module)
        feats = [
            pooled_features(module, iter_image_batches(paths, size, mean, std, args.batch_size))
            for paths in (train_paths, test_paths)
        ]
        results[spec.label] = dict(
            evaluate_frozen(feats[0], train_labels, feats[1], test_labels, k=args.k),
            num_train=len(train_paths),
            num_test=len(test_paths),
            img_size=size,
            seconds=round(time.time() - start, 1))
        row = results[spec.label]
        print(
            f'{spec.label}: {args.k}-NN {row["knn_top1"]:.2f}%, linear {row["linear_top1"]:.2f}% '
            f'({row["dims"]}-d, {size} px, {row["seconds"]} s)',
            flush=True)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=2)
    print(f'wrote {args.out}')
    return results


if __name__ == '__main__':
    main()
