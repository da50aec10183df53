"""Turns OpenAI's CLIP file into an mmpretrain classifier checkpoint (the "fine-tune CLIP itself" baseline).

Reads the visual tower of an OpenAI TorchScript archive (``ViT-B-16.pt``, with a restricted unpickler that
never runs pickled code) or of a state dict in OpenAI/open_clip naming, maps it to mmpretrain's
``VisionTransformer`` (``pre_norm=True``, QuickGELU; see ``fdclip_mm/converters/clip_to_vit.py``), drops the
text-space projection and ``ln_post`` (the classifier pools the patch tokens into a fresh ``ln2``) and writes
``{'state_dict': {'backbone.<key>': ...}}`` in float32.

Example:
    python tools/model_converters/clip_to_classifier.py data/weights/clip/ViT-B-16.pt clip_vit-b16_cls.pth
"""
import argparse
import os.path as osp

from fdclip_mm.converters.clip_to_vit import load_clip_as_vit
from fdclip_mm.converters.to_classifier import save_classifier_checkpoint
from output_path import parse_converter_args  # beside this script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='OpenAI CLIP file (TorchScript archive) or a CLIP state dict')
    parser.add_argument('dst', help='where to write the classifier checkpoint')
    parser.add_argument(
        '--final-norm', action='store_true', help='keep ln_post as ln1 (for a backbone with final_norm=True)')
    return parse_converter_args(parser)


def main() -> None:
    args = parse_args()
    backbone = load_clip_as_vit(args.src, final_norm=args.final_norm)
    save_classifier_checkpoint(backbone, args.dst, dict(converted_from=osp.basename(args.src)))
    params = sum(v.numel() for v in backbone.values())
    print(f'wrote {len(backbone)} backbone tensors ({params / 1e6:.2f} M values) to {args.dst}')


if __name__ == '__main__':
    main()
