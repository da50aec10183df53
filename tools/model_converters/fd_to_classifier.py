"""Turns a distillation checkpoint (or a student backbone checkpoint) into an mmpretrain classifier checkpoint.

The output holds ``{'state_dict': {'backbone.<FDViT key>': ...}}`` in the layout of the fine-tuning backbone
(``configs/finetune_in1k/``: ``pos_embed='rpb'``, ``final_norm=False``, ``out_type='avg_featmap'``): the
distilled shared relative position bias copied into every layer, the student's final norm dropped and a fresh
``ln2`` added. It loads into ``ImageClassifier.backbone`` with no missing or unexpected key; the head is
initialised by the config. Point the config at it with ``--cfg-options model.backbone.init_cfg.checkpoint=DST``.

Example:
    python tools/model_converters/fd_to_classifier.py work_dirs/fd/epoch_300.pth fd_vit-b16_cls.pth
    python tools/model_converters/fd_to_classifier.py work_dirs/fd fd_vit-b16_cls.pth      # last checkpoint
"""
import argparse

from fdclip_mm.converters.to_classifier import convert_fd_to_classifier
from output_path import parse_converter_args  # beside this script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='FeatureDistiller checkpoint, its work dir, or a student backbone checkpoint')
    parser.add_argument('dst', help='where to write the classifier checkpoint')
    parser.add_argument(
        '--shared-rpb',
        action='store_true',
        help='keep one shared RPB table (for a backbone with pos_embed="shared_rpb")')
    parser.add_argument(
        '--final-norm',
        action='store_true',
        help="keep the student's final norm ln1 (for a backbone with final_norm=True)")
    return parse_converter_args(parser)


def main() -> None:
    args = parse_args()
    backbone = convert_fd_to_classifier(
        args.src, args.dst, per_layer_rpb=not args.shared_rpb, final_norm=args.final_norm)
    params = sum(v.numel() for v in backbone.values())
    print(f'wrote {len(backbone)} backbone tensors ({params / 1e6:.2f} M values) to {args.dst}')


if __name__ == '__main__':
    main()
