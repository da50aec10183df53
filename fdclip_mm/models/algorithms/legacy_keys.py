"""Key renames that let checkpoints of earlier versions of the distiller load.

Earlier layouts held the projectors beside the student, by teacher index: ``projectors.<i>.*`` (several
teachers, ``teachers=[...]``) and, before that, ``projector.*`` (one teacher). They are now in the teacher's
branch, by name: ``branches.<name>.projector.*``. The target norms and losses have no tensors, and no
checkpoint held a teacher, so nothing else moved.
"""
import re
from typing import Dict, Sequence

_INDEXED = re.compile(r'projectors\.(\d+)\.(.*)')
_SINGLE = re.compile(r'projector\.(.*)')


def rename_legacy_keys(state_dict: Dict, prefix: str, teacher_names: Sequence[str]) -> None:
    """Renames, in place, the keys under ``prefix`` of the earlier layouts to ``branches.<name>.projector.*``.

    Args:
        state_dict: A distiller's state dict (as ``load_state_dict`` pre-hooks get it).
        prefix: The distiller's prefix in ``state_dict``.
        teacher_names: The distiller's teacher names, in the order of its teachers.
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        indexed, single = _INDEXED.fullmatch(rest), _SINGLE.fullmatch(rest)
        if indexed and int(indexed[1]) < len(teacher_names):
            name, tail = teacher_names[int(indexed[1])], indexed[2]
        elif single:
            name, tail = teacher_names[0], single[1]
        else:
            continue
        state_dict[f'{prefix}branches.{name}.projector.{tail}'] = state_dict.pop(key)
