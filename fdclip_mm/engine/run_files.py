"""The files of a run in its work dir: its checkpoints, what a new run may not replace, and setting them aside.

- :func:`latest_checkpoint_candidates`: what ``--resume`` tries, best first; ``last_checkpoint`` is resolved
  inside the work dir (:func:`~fdclip_mm.checkpoint.read_last_checkpoint`).
- :func:`refuse_to_replace_run`: a new run is refused in a work dir that holds checkpoints of a run.
- :func:`move_earlier_run_aside`: ``overwrite = True`` (``--overwrite``) moves the earlier run's files into a
  dated folder inside the work dir, where nothing is deleted and nothing is found by ``--resume`` (the new
  checkpoints used to be written beside the old ones, and a resume after a new checkpoint cut short continued
  the old run). The checked runners call it when training starts.
"""
import glob
import os
import os.path as osp
import re
import time
from typing import Any, Iterable, List, Optional, Set, Union

from fdclip_mm.checkpoint import POINTER_FILE, read_last_checkpoint
from .work_dir_lock import LOCK_FILE

CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')
#: Name of the folders (``earlier_run_<YYYYmmdd_HHMMSS>``) that ``--overwrite`` moves an earlier run into.
EARLIER_RUN_PREFIX = 'earlier_run_'


def run_checkpoints(work_dir: str) -> List[str]:
    """A run's checkpoints in ``work_dir``: ``epoch_N`` / ``iter_N`` files, newest (largest N) first."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        match = CHECKPOINT_NAME.match(osp.basename(path))
        if match:
            found.append((int(match.group(2)), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint_candidates(work_dir: str) -> List[str]:
    """Checkpoints to resume from, best first: the one ``last_checkpoint`` names (inside ``work_dir``), then
    the others, newest first.

    Raises:
        ValueError: ``last_checkpoint`` names a file outside ``work_dir`` that is not in it.
    """
    named = read_last_checkpoint(work_dir)
    named = [named] if named else []
    seen = {osp.abspath(p) for p in named}
    return named + [p for p in run_checkpoints(work_dir) if osp.abspath(p) not in seen]


def existing_run_files(work_dir: str) -> List[str]:
    """The files of ``work_dir`` that a new run would replace: its checkpoints and ``last_checkpoint``."""
    pointer = osp.join(work_dir, POINTER_FILE)
    return run_checkpoints(work_dir) + ([pointer] if osp.isfile(pointer) else [])


def refuse_to_replace_run(work_dir: str, resume: Union[bool, str], overwrite: bool) -> None:
    """Raises when a new run (no ``resume``, no ``overwrite``) would replace the run held in ``work_dir``.

    Raises:
        FileExistsError: Naming the files and the three ways on (``--resume``, another ``--work-dir``,
            ``--overwrite``).
    """
    if resume or overwrite:
        return
    existing = existing_run_files(work_dir)
    if existing:
        names = ', '.join(osp.basename(p) for p in existing[:4]) + (', ...' if len(existing) > 4 else '')
        raise FileExistsError(
            f'{work_dir} already holds a run ({names}) that this run would overwrite. Continue it with --resume, '
            'choose another --work-dir, or pass --overwrite to replace it')


def entries_named_by(config: Any, work_dir: str) -> Set[str]:
    """The top-level entries of ``work_dir`` that a string of ``config`` (nested dicts and lists) names as an
    existing path: files the new run reads (a teacher-target cache, ``load_from``)."""
    root = osp.realpath(work_dir)
    found = set()
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, str) and value and osp.exists(value):
            path = osp.realpath(value)
            if path != root and osp.commonpath([path, root]) == root:
                found.add(osp.relpath(path, root).split(os.sep)[0])
    return found


def move_earlier_run_aside(work_dir: str, keep: Iterable[str] = ()) -> Optional[str]:
    """Moves every entry of ``work_dir`` into a new folder ``work_dir/earlier_run_<YYYYmmdd_HHMMSS>``.

    Left in place: the run lock, earlier such folders and the entries named in ``keep``. The entries are
    renamed (same file system): nothing is copied or deleted, and ``--resume`` (which looks at the work dir's
    top level) finds none of them.

    Args:
        work_dir: The work dir (it may not exist).
        keep: Names of top-level entries to leave in place (see :func:`entries_named_by`).

    Returns:
        The new folder, or None when there was nothing to move.
    """
    if not osp.isdir(work_dir):
        return None
    keep = set(keep) | {LOCK_FILE}
    entries = sorted(
        name for name in os.listdir(work_dir) if name not in keep and not name.startswith(EARLIER_RUN_PREFIX))
    if not entries:
        return None
    stamp = time.strftime('%Y%m%d_%H%M%S')
    folder, suffix = osp.join(work_dir, EARLIER_RUN_PREFIX + stamp), 1
    while osp.exists(folder):
        suffix += 1
        folder = osp.join(work_dir, f'{EARLIER_RUN_PREFIX}{stamp}_{suffix}')
    os.mkdir(folder)
    for name in entries:
        os.replace(osp.join(work_dir, name), osp.join(folder, name))
    return folder
