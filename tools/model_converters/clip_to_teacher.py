"""Converts a CLIP checkpoint into a plain state dict of its visual tower (read by ``BackboneTeacher(reader='clip')``).

Reads an OpenAI TorchScript archive (``ViT-B-16.pt``) or an OpenAI/open_clip state dict without executing
pickled code, and writes ``{'conv1.weight': ..., 'transformer.resblocks.0....': ..., 'ln_post.bias': ...}``
(no ``visual.`` prefix, ``proj`` kept when present) that ``torch.load(..., weights_only=True)`` reads.

Example::

    python tools/model_converters/clip_to_teacher.py ViT-B-16.pt clip_vit_b16_visual.pth
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Optional

import torch

from fdclip_mm.converters.clip_weights import block_indices, load_clip_visual_state_dict
from output_path import parse_converter_args  # beside this script


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='OpenAI TorchScript archive or CLIP state-dict file')
    parser.add_argument('dst', help='output state-dict file (.pth)')
    parser.add_argument('--fp32', action='store_true', help='store floating tensors as float32 (default: as read)')
    return parse_converter_args(parser, argv)


def describe(state_dict: Dict[str, torch.Tensor]) -> str:
    """One line: width, layers, patch size, native resolution, dtype and parameter count."""
    width, _, patch, _ = state_dict['conv1.weight'].shape
    side = int((state_dict['positional_embedding'].shape[0] - 1)**0.5)
    numel = sum(v.numel() for v in state_dict.values())
    dtype = str(state_dict['conv1.weight'].dtype).replace('torch.', '')
    layers = len(block_indices(state_dict))
    return (f'width {width}, layers {layers}, patch {patch}, resolution {side * patch}, {dtype}, '
            f'{numel / 1e6:.2f}M parameters, {len(state_dict)} tensors')


def convert(src: str, dst: str, fp32: bool = False) -> Dict[str, torch.Tensor]:
    """Reads ``src`` and writes its visual tower to ``dst``; returns what was written."""
    state_dict = load_clip_visual_state_dict(src)
    if fp32:
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(state_dict, dst)
    return state_dict


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    state_dict = convert(args.src, args.dst, args.fp32)
    print(f'wrote {args.dst}: {describe(state_dict)}')


if __name__ == '__main__':
    main()
