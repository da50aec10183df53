"""Distillation checkpoint -> student backbone checkpoint (teacher and projector stripped)."""
import os
import os.path as osp
from typing import Dict, Optional, Sequence

import torch

from fdclip_mm.checkpoint import read_last_checkpoint, read_state_dict

STUDENT_PREFIX = 'student.'
#: Key prefix of a dense-task backbone file (``out_indices`` given): an mmpretrain classifier's layout, the one
#: mmdet's ``SwinTransformer`` reads (it keeps ``backbone.`` keys only), mmseg's accepts, and mmpretrain's
#: ``ConvNeXt`` reads with ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.
DENSE_PREFIX = 'backbone.'


def resolve_checkpoint(path: str) -> str:
    """``path`` itself, or for a work dir the checkpoint its ``last_checkpoint`` file names, inside that work dir
    (:func:`~fdclip_mm.checkpoint.read_last_checkpoint`: a copied work dir stands for its own checkpoint)."""
    if not osp.isdir(path):
        return path
    checkpoint = read_last_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f'{path} is a folder without a last_checkpoint file; pass a .pth file')
    return checkpoint


def extract_student(state_dict: Dict[str, torch.Tensor], source: str = '<state dict>') -> Dict[str, torch.Tensor]:
    """The student's tensors with the ``student.`` prefix removed."""
    student = {k[len(STUDENT_PREFIX):]: v for k, v in state_dict.items() if k.startswith(STUDENT_PREFIX)}
    if not student:
        prefixes = sorted({k.split('.')[0] for k in state_dict})
        raise KeyError(f'{source} has no "student." keys (top-level prefixes: {prefixes}); '
                       'is it a FeatureDistiller checkpoint?')
    return student


def stage_channels(backbone: Dict[str, torch.Tensor], stage: int, source: str = '<state dict>') -> int:
    """Channels of stage ``stage`` of a Swin (``stages.i.blocks.0.norm1``) or ConvNeXt (``stages.i.0.norm``)."""
    for key in (f'stages.{stage}.blocks.0.norm1.weight', f'stages.{stage}.0.norm.weight'):
        if key in backbone:
            return backbone[key].shape[0]
    raise KeyError(f'{source}: no stage {stage} of a Swin or ConvNeXt backbone among the student\'s tensors '
                   f'(stages found: {sorted({k.split(".")[1] for k in backbone if k.startswith("stages.")})}); '
                   'out_indices is for Swin / ConvNeXt students only')


def add_output_norms(backbone: Dict[str, torch.Tensor],
                     out_indices: Sequence[int],
                     source: str = '<state dict>') -> Dict[str, torch.Tensor]:
    """Adds the per-stage output norms ``norm{i}`` a dense-task Swin / ConvNeXt has and the student lacks.

    A distilled student outputs one stage, so it holds that stage's norm only; mmdet's and mmseg's
    ``SwinTransformer`` (and ``mmpretrain.ConvNeXt`` with ``out_indices=(0, 1, 2, 3)``) have one per output.
    The missing ones are written as identity LayerNorms (weight 1, bias 0): the state they start from anyway
    when the detector loads an ImageNet checkpoint, which has the last stage's norm only, and the whole file
    now loads with no missing key.
    """
    out = dict(backbone)
    for index in out_indices:
        if f'norm{index}.weight' not in out:
            channels = stage_channels(out, index, source)
            out[f'norm{index}.weight'] = torch.ones(channels)
            out[f'norm{index}.bias'] = torch.zeros(channels)
    return out


def convert_fd_checkpoint(src: str, dst: str, out_indices: Sequence[int] = ()) -> Dict[str, torch.Tensor]:
    """Writes the student backbone of distillation checkpoint ``src`` to ``dst`` (``{'state_dict': ...}``).

    ``src`` may also be a work dir (its last checkpoint is used). Without ``out_indices`` the keys are the
    backbone's own (what ``FDViT``'s and mmengine's ``Pretrained`` init read). ``out_indices`` (Swin / ConvNeXt
    students for mmdet / mmseg) adds the output norms of those stages (:func:`add_output_norms`) and writes the
    keys under :data:`DENSE_PREFIX`. The file is written next to ``dst`` first and renamed, so an interrupted
    run leaves no partial file.

    Returns:
        The tensors written, under the keys written.
    """
    src = resolve_checkpoint(src)
    student = extract_student(read_state_dict(src), src)
    if out_indices:
        student = {DENSE_PREFIX + k: v for k, v in add_output_norms(student, out_indices, src).items()}
    save_state_dict(student, dst, dict(converted_from=osp.basename(src), out_indices=list(out_indices)))
    return student


def save_state_dict(state_dict: Dict[str, torch.Tensor], dst: str, meta: Optional[dict] = None) -> None:
    """Writes ``{'state_dict': state_dict, 'meta': meta}`` to ``dst`` through a temporary file and a rename."""
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save({'state_dict': {k: v.contiguous() for k, v in state_dict.items()}, 'meta': dict(meta or {})}, tmp)
    os.replace(tmp, dst)
