"""Turns a distillation checkpoint into a student backbone checkpoint.

The output holds ``{'state_dict': <student weights>}`` (teachers and projectors stripped) and loads as
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` of an ``FDViT`` or through ``load_checkpoint``; a shared
RPB table is expanded into per-layer tables, and tables and position embeddings are resized, when the
downstream backbone loads it. A Swin or ConvNeXt student loads into the mmdet / mmseg backbone of the same name
(``SwinTransformer``: their own class, no missing key) once ``--out-indices`` adds the stage norms it lacks;
the keys are then written under ``backbone.`` (mmdet's Swin reads nothing else; mmseg's takes it too).

Example:
    python tools/model_converters/fd_to_backbone.py work_dirs/fd/epoch_300.pth fd_vit-b16_backbone.pth
    python tools/model_converters/fd_to_backbone.py work_dirs/fd fd_vit-b16_backbone.pth   # last checkpoint
    python tools/model_converters/fd_to_backbone.py work_dirs/fd_swin fd_swin-t_backbone.pth --out-indices 0 1 2 3
"""
import argparse

from fdclip_mm.converters import convert_fd_checkpoint
from output_path import parse_converter_args  # beside this script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint written by a FeatureDistiller run, or its work dir (last checkpoint)')
    parser.add_argument('dst', help='where to write the student backbone checkpoint')
    parser.add_argument(
        '--out-indices',
        type=int,
        nargs='+',
        default=[],
        help='Swin / ConvNeXt students for mmdet / mmseg: the stages the dense backbone '
        'outputs (adds their norms, writes backbone.* keys)')
    return parse_converter_args(parser)


def main() -> None:
    args = parse_args()
    student = convert_fd_checkpoint(args.src, args.dst, out_indices=args.out_indices)
    params = sum(v.numel() for v in student.values())
    print(f'wrote {len(student)} tensors ({params / 1e6:.2f} M values) of the student to {args.dst}')


if __name__ == '__main__':
    main()
