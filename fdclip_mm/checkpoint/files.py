"""Reading checkpoint files safely, with errors that name the file.

Every reader of ours goes through :func:`read_checkpoint`: ``torch.load(weights_only=True)`` (a Runner
checkpoint's message hub is allow-listed by :mod:`.safe_globals`), and any failure becomes a
:class:`CheckpointFileError` that names the file and says what is wrong with it: missing, empty, truncated,
not a PyTorch file, a TorchScript archive, or holding Python objects that are not weights. Torch's own advice
for the last case (to turn the weights-only loader off, which runs whatever code the file holds) is never
passed on.
"""
import os.path as osp
import zipfile
from typing import Any, Callable, Dict, Mapping, Union

import torch

from .safe_globals import register_checkpoint_globals

#: Keys under which checkpoints keep their state dict (mmengine's ``PretrainedInit`` reads these two).
STATE_DICT_KEYS = ('state_dict', 'model')


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read; the message names the file and the problem."""


def read_checkpoint(path: str, map_location: Union[str, torch.device, Callable] = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for every unreadable file.

    Args:
        path: A local checkpoint file.
        map_location: Passed to ``torch.load``.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        CheckpointFileError: The file is empty, truncated, not a PyTorch file, or holds objects other than
            weights.
    """
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if osp.getsize(path) == 0:
        raise CheckpointFileError(f'{path} is empty (0 bytes): not a checkpoint')
    register_checkpoint_globals()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  (every failure gets a message naming the file)
        raise CheckpointFileError(describe_read_error(path, err)) from None


def describe_read_error(path: str, err: BaseException) -> str:
    """What is wrong with ``path``, from the exception ``torch.load(weights_only=True)`` raised on it.

    Args:
        path: The file.
        err: The exception.

    Returns:
        str: One message that names the file and never advises disabling the weights-only loader.
    """
    text = str(err)
    with open(path, 'rb') as f:
        head = f.read(16)
    is_zip = head.startswith(b'PK')
    if is_zip and _is_whole_zip(path) and is_torchscript_archive(path):
        return (f'{path} is a TorchScript archive (what torch.jit.save writes, e.g. OpenAI\'s CLIP ViT-*.pt), '
                'not a checkpoint of tensors. OpenAI CLIP archives are read by the teacher reader \'clip\' '
                '(tools/model_converters/clip_to_teacher.py, clip_to_backbone.py, clip_to_classifier.py) without '
                'running their code; for another model, save its weights with torch.save(model.state_dict(), ...)')
    if is_zip and not _is_whole_zip(path):
        return (f'{path} is truncated or corrupt ({osp.getsize(path)} bytes, an incomplete zip archive; '
                f'{_first_line(err)}): it was probably cut short by an interrupted copy or save')
    if 'unsupported global' in text.lower():  # ("Unsupported operand" is a byte that is no pickle opcode)
        detail = next(line.strip() for line in text.splitlines() if 'unsupported global' in line.lower())
        detail = detail.split('. ')[0].rstrip('.')
        return (f'{path} holds Python objects that are not weights ({detail}); fdclip_mm reads checkpoints '
                'as tensors only and does not run code from files. Save the weights as a plain state dict '
                '(torch.save(model.state_dict(), ...)) and use that file')
    if is_zip or head.startswith(b'\x80') or isinstance(err, EOFError):
        return (f'{path} is truncated or corrupt ({osp.getsize(path)} bytes; {_first_line(err)}): it was '
                'probably cut short by an interrupted copy or save')
    return f'{path} is not a PyTorch checkpoint (it starts with {head!r})'


def is_torchscript_archive(path: str) -> bool:
    """Whether ``path`` is a TorchScript zip (``torch.jit.save``) rather than a ``torch.save`` file.

    Uses torch's own criterion: TorchScript archives hold a ``constants.pkl`` record (and their code).
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(_record_name(name) in ('constants.pkl', 'code') for name in archive.namelist())


def _record_name(member: str) -> str:
    """The first path component below the archive's root folder (``root/code/x.py`` -> ``code``)."""
    parts = member.split('/')
    return parts[1] if len(parts) > 1 else ''


def _is_whole_zip(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):
        return False


def _first_line(err: BaseException) -> str:
    """The first line of ``err`` that is not torch's advice about ``weights_only``."""
    for line in str(err).splitlines():
        line = line.strip()
        if line and 'weights_only' not in line and 'weights only' not in line.lower():
            return f'{type(err).__name__}: {line.split(". ")[0].rstrip(".")}'
    return type(err).__name__


def read_state_dict(path: str, prefix: str = '') -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: its ``state_dict`` (or the file itself), optionally under ``prefix``.

    Args:
        path: A checkpoint file (``{'state_dict': ...}``, ``{'model': ...}`` or a bare state dict).
        prefix: Keep only keys that start with it, with the prefix removed (mmengine's ``Pretrained`` init).

    Returns:
        dict: Key -> tensor.

    Raises:
        CheckpointFileError: The file is unreadable, holds no state dict of tensors, or no key has ``prefix``.
    """
    loaded = read_checkpoint(path)
    state = next((loaded[k] for k in STATE_DICT_KEYS if isinstance(loaded, dict) and isinstance(loaded.get(k), dict)),
                 loaded)
    if not isinstance(state, Mapping) or not state or \
            not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointFileError(f'{path} holds no state dict of tensors (got {type(loaded).__name__})')
    if not prefix:
        return dict(state)
    kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not kept:
        prefixes = sorted({k.split('.')[0] + '.' for k in state})
        raise CheckpointFileError(f'{path} has no key starting with {prefix!r} (its prefixes: {prefixes})')
    return kept
