"""Distillation checkpoint -> student backbone checkpoint (teacher and projector stripped)."""
import os
import os.path as osp
from typing import Dict, Optional

import torch

from fdclip_mm.checkpoint_file import read_state_dict

STUDENT_PREFIX = 'student.'


def resolve_checkpoint(path: str) -> str:
    """``path`` itself, or for a work dir the checkpoint its ``last_checkpoint`` file names."""
    if not osp.isdir(path):
        return path
    pointer = osp.join(path, 'last_checkpoint')
    if not osp.isfile(pointer):
        raise FileNotFoundError(f'{path} is a folder without a last_checkpoint file; pass a .pth file')
    with open(pointer) as f:
        return f.read().strip()


def extract_student(state_dict: Dict[str, torch.Tensor], source: str = '<state dict>') -> Dict[str, torch.Tensor]:
    """The student's tensors with the ``student.`` prefix removed."""
    student = {k[len(STUDENT_PREFIX):]: v for k, v in state_dict.items() if k.startswith(STUDENT_PREFIX)}
    if not student:
        prefixes = sorted({k.split('.')[0] for k in state_dict})
        raise KeyError(f'{source} has no "student." keys (top-level prefixes: {prefixes}); '
                       'is it a FeatureDistiller checkpoint?')
    return student


def convert_fd_checkpoint(src: str, dst: str) -> Dict[str, torch.Tensor]:
    """Writes the student backbone of distillation checkpoint ``src`` to ``dst`` (``{'state_dict': ...}``).

    ``src`` may also be a work dir (its last checkpoint is used). The file is written next to ``dst`` first
    and renamed, so an interrupted run leaves no partial file.
    """
    src = resolve_checkpoint(src)
    student = extract_student(read_state_dict(src), src)
    save_state_dict(student, dst, dict(converted_from=osp.basename(src)))
    return student


def save_state_dict(state_dict: Dict[str, torch.Tensor], dst: str, meta: Optional[dict] = None) -> None:
    """Writes ``{'state_dict': state_dict, 'meta': meta}`` to ``dst`` through a temporary file and a rename."""
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save({'state_dict': {k: v.contiguous() for k, v in state_dict.items()}, 'meta': dict(meta or {})}, tmp)
    os.replace(tmp, dst)
