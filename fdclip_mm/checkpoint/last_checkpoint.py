"""The checkpoint a work dir's ``last_checkpoint`` file names, resolved inside that work dir.

mmengine's checkpoint hook writes the absolute path of the newest checkpoint into ``work_dir/last_checkpoint``.
A work dir copied or moved elsewhere (``cp -a A B``) keeps naming A's files, which by then may belong to
another run; mmengine resumes from them. Here the pointer is read as naming a file of its own work dir: a path
outside it stands for the file of the same name inside it, and one whose name is not there is refused.
"""
import os.path as osp
from typing import Optional

POINTER_FILE = 'last_checkpoint'


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint that ``work_dir/last_checkpoint`` names, as a path inside ``work_dir``.

    Args:
        work_dir: A run's work dir.

    Returns:
        The checkpoint's path (which may no longer exist), or None when there is no pointer or it is empty.

    Raises:
        ValueError: The pointer names a file outside ``work_dir`` and no file of that name is in
            ``work_dir``: it belongs to another folder (a checkpoint ``out_dir``, another run).
    """
    pointer = osp.join(work_dir, POINTER_FILE)
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        named = f.read().strip()
    if not named:
        return None
    if not osp.isabs(named):
        named = osp.join(work_dir, named)
    if _inside(named, work_dir):
        return named
    own = osp.join(work_dir, osp.basename(named))
    if osp.exists(own):  # a copied or moved work dir: its own file of that name
        return own
    raise ValueError(f'{pointer} names {named}, which is outside {work_dir} (a copied work dir, or checkpoints '
                     f'written to another out_dir); {osp.basename(named)} is not in {work_dir}. If that file is '
                     f'this run\'s, resume from it explicitly: --resume {named}')
