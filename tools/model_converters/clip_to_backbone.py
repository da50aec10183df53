"""Turns OpenAI's CLIP file into a backbone checkpoint for dense tasks (the CLIP baseline of mmdet/mmseg configs).

The visual tower is read without unpickling code (see ``fdclip_mm/converters/clip_to_vit.py``) and written as
mmpretrain ``VisionTransformer`` tensors without prefix, ``{'state_dict': ...}``, float32: the layout that
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` of a ``mmpretrain.VisionTransformer`` backbone with
``pre_norm=True, final_norm=False, out_type='featmap'`` loads with no missing and no unexpected key. The
text-space projection and ``ln_post`` are dropped (``--final-norm`` keeps ``ln_post`` as ``ln1``).

Example:
    python tools/model_converters/clip_to_backbone.py data/weights/clip/ViT-B-16.pt \\
        data/weights/clip/clip-vit-b16_backbone.pth
"""
import argparse
import os.path as osp

from fdclip_mm.converters import save_state_dict
from fdclip_mm.converters.clip_to_vit import load_clip_as_vit
from output_path import parse_converter_args  # beside this script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='OpenAI CLIP file (TorchScript archive) or a CLIP state dict')
    parser.add_argument('dst', help='where to write the backbone checkpoint')
    parser.add_argument(
        '--final-norm', action='store_true', help='keep ln_post as ln1 (for a backbone with final_norm=True)')
    return parse_converter_args(parser)


def main() -> None:
    args = parse_args()
    backbone = load_clip_as_vit(args.src, final_norm=args.final_norm, head_norm=False)
    save_state_dict(backbone, args.dst, dict(converted_from=osp.basename(args.src)))
    params = sum(v.numel() for v in backbone.values())
    print(f'wrote {len(backbone)} backbone tensors ({params / 1e6:.2f} M values) to {args.dst}')


if __name__ == '__main__':
    main()
