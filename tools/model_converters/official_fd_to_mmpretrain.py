"""Turns a model released by the FD authors (SwinTransformer/Feature-Distillation) into a checkpoint of ours.

Takes any of the ten released files (distilled or fine-tuned; CLIP ViT-B/16, DINO ViT-B/16, DeiT ViT-B/16,
CLIP ViT-L/14, EsViT Swin-B -> SwinV2-B), tells from its keys and shapes which it is, prints that in one line,
and writes

- for a distilled file: the student backbone, exactly as ``fd_to_backbone.py`` writes it from a distillation run
  of ours (give it to ``fd_to_classifier.py``, a fine-tuning config or a Mask R-CNN / UperNet / depth config);
- for a fine-tuned file: an mmpretrain ``ImageClassifier`` checkpoint for the fine-tuning config the line names
  (``python tools/test.py CONFIG DST`` evaluates it).

The file is read as tensors only (its yacs config as plain data, without yacs); a file holding any other Python
object is refused, and nothing in it runs. ``DST`` is never overwritten without ``--overwrite``.

Example:
    python tools/model_converters/official_fd_to_mmpretrain.py fd_clip_vit_base_300ep.pth fd-clip-vit-b16_backbone.pth
"""
import argparse
import sys

from fdclip_mm.checkpoint import CheckpointFileError
from fdclip_mm.converters.official_fd import DISTILLED, OfficialKeyError, convert_official_fd
from output_path import parse_converter_args  # beside this script


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='a distilled or fine-tuned file released by the FD authors')
    parser.add_argument('dst', help='where to write our checkpoint')
    return parse_converter_args(parser)


def main() -> None:
    args = parse_args()
    try:
        model, tensors = convert_official_fd(args.src, args.dst)
    except (CheckpointFileError, OfficialKeyError, FileNotFoundError) as err:
        sys.exit(f'[error] {err}')
    print(f'{args.src}: {model.describe()}')
    params = sum(v.numel() for v in tensors.values())
    what = 'the student backbone' if model.stage == DISTILLED else 'an mmpretrain classifier'
    print(f'wrote {what} ({len(tensors)} tensors, {params / 1e6:.2f} M values) to {args.dst}')
    candidates = {model.teacher: model.configs()} if model.configs() else model.candidate_configs()
    for teacher, (distill_config, finetune_config) in candidates.items():
        if model.stage != DISTILLED:
            print(f'{teacher}: evaluate with python tools/test.py {finetune_config} {args.dst}')
        elif model.kind == 'vit':
            print(f'{teacher}: distilled as {distill_config}; fine-tune with {finetune_config} after python '
                  f'tools/model_converters/fd_to_classifier.py {args.dst} CLASSIFIER.pth (its init_cfg checkpoint)')
        else:
            print(f'{teacher}: distilled as {distill_config}; fine-tune with {finetune_config} (its init_cfg '
                  f'checkpoint is this file)')


if __name__ == '__main__':
    main()
