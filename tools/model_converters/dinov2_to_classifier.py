"""Turns DINOv2 weights (Hugging Face ``Dinov2Model`` names: the demo's ``dinov2_vits14.pth`` or an ONNX export)
into an mmpretrain classifier checkpoint: fine-tuning the teacher itself, the reference row of a comparison.

The backbone is mmpretrain's ``VisionTransformer(arch='dinov2-s', patch_size=14, layer_scale_init_value=1e-5,
out_type='avg_featmap', final_norm=False)`` (see ``fdclip_mm/converters/dinov2_to_vit.py``); the position
embeddings are resized to the grid of ``--img-size``; the final ``layernorm`` is dropped and a fresh ``ln2``
pools the patch tokens. An existing ``dst`` is kept unless ``--overwrite`` is given.

Example:
    python tools/model_converters/dinov2_to_classifier.py data/demo/weights/dinov2_vits14.pth \
        work_dirs/dinov2-vits14_cls_112.pth --img-size 112
"""
import argparse
import os.path as osp
import sys

from fdclip_mm.converters.dinov2_to_vit import dinov2_to_vit_state_dict
from fdclip_mm.converters.dinov2_weights import load_dinov2_checkpoint
from fdclip_mm.converters.to_classifier import save_classifier_checkpoint
from output_path import parse_converter_args  # beside this script


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='DINOv2 weights: .pth state dict in Hugging Face names, or .onnx export')
    parser.add_argument('dst', help='where to write the classifier checkpoint')
    parser.add_argument('--img-size', type=int, required=True, help='fine-tuning input size (multiple of the patch)')
    return parse_converter_args(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    weights = load_dinov2_checkpoint(args.src)
    patch = weights['embeddings.patch_embeddings.projection.weight'].shape[-1]
    if args.img_size % patch:
        print(f'[error] --img-size {args.img_size} is not a multiple of the patch size {patch}', file=sys.stderr)
        return 1
    grid = (args.img_size // patch, ) * 2
    backbone = dinov2_to_vit_state_dict(weights, grid)
    save_classifier_checkpoint(backbone, args.dst, dict(converted_from=osp.basename(args.src), grid=list(grid)))
    print(f'wrote {len(backbone)} backbone tensors ({sum(v.numel() for v in backbone.values()) / 1e6:.2f} M values, '
          f'grid {grid}) to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
