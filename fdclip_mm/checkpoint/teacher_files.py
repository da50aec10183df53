"""A teacher's published file as the state dict of its mmpretrain backbone, read by its family's reader."""
from typing import Dict

import torch

from fdclip_mm.registry import TEACHER_READERS


def read_teacher_checkpoint(reader: str, path: str) -> Dict[str, torch.Tensor]:
    """The state dict the reader registered as ``reader`` in ``TEACHER_READERS`` makes of the file ``path``.

    Raises:
        KeyError: An unknown reader name, with the known ones.
    """
    TEACHER_READERS.import_from_location()
    if reader not in TEACHER_READERS.module_dict:
        raise KeyError(f'unknown teacher checkpoint reader {reader!r}; choose one of '
                       f'{sorted(TEACHER_READERS.module_dict)}')
    return TEACHER_READERS.module_dict[reader](path)
