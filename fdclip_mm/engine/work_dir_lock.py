"""One run per work dir: an exclusive lock that the run's process holds until it ends, however it ends.

mmengine lets two runs write into one work dir at once: both train and exit 0, and the checkpoints,
``last_checkpoint`` and the config dump then come from different runs. Here a run (training, resumed training,
testing) takes ``fcntl.flock`` on ``work_dir/.fdclip_run.lock`` before it writes anything and keeps it for the
life of its process; the kernel releases it when the process exits, crashes or is killed, so no stale lock is
ever left behind. (Forked data-loader workers share the lock's file description: they keep it until they
notice that their parent died, a few seconds.)

Only rank 0 of a job takes the lock: the ranks of a DDP or FSDP2 job, on one node or on several sharing the work
dir, are one run. The rank comes from the launcher's environment (torchrun's ``RANK``, Slurm's
``SLURM_PROCID``, Open MPI's ``OMPI_COMM_WORLD_RANK``), so a second job's rank 0 is refused before it joins its
own process group. The lock file names its holder (pid, host, start time, command) for the refusal message.
A run refused before it wrote anything removes the lock file again (:func:`release_work_dir`); a lock is
therefore taken only on a lock file that is still in place after locking it. On network file systems
``flock`` needs their lock support (NFSv4 maps it to byte-range locks).
"""
import fcntl
import os
import os.path as osp
import shlex
import socket
import sys
import time
from typing import IO, Dict, List, Tuple

from .refusals import RunRefused

LOCK_FILE = '.fdclip_run.lock'
#: Where each launcher puts the process's global rank.
RANK_VARIABLES = {'pytorch': 'RANK', 'slurm': 'SLURM_PROCID', 'mpi': 'OMPI_COMM_WORLD_RANK'}

_held: Dict[str, Tuple[IO, bool]] = {}  # real path of a work dir -> (its open, locked lock file, folder created)


class WorkDirInUseError(RunRefused):
    """Another process holds the run lock of the work dir; the message names it."""


def launcher_rank(launcher: str) -> int:
    """This process's global rank as the launcher's environment gives it (0 for ``launcher='none'``)."""
    variable = RANK_VARIABLES.get(launcher)
    return int(os.environ.get(variable, 0)) if variable else 0


def holder_description() -> str:
    """``pid P on HOST since TIME: COMMAND`` for this process."""
    since = time.strftime('%Y-%m-%d %H:%M:%S')
    return f'pid {os.getpid()} on {socket.gethostname()} since {since}: {shlex.join(sys.argv)}'


def lock_work_dir(work_dir: str, launcher: str = 'none') -> bool:
    """Takes ``work_dir``'s run lock for this process (rank 0 of a job), creating the folder if needed.

    Args:
        work_dir: The run's work dir.
        launcher: The run's launcher (``'none'``, ``'pytorch'``, ``'slurm'``, ``'mpi'``): ranks other than 0
            take no lock.

    Returns:
        Whether this process holds the lock (True also when it already held it).

    Raises:
        NotADirectoryError: ``work_dir`` is a file.
        WorkDirInUseError: Another process holds the lock.
    """
    if launcher_rank(launcher) != 0:
        return False
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise NotADirectoryError(f'work_dir {work_dir} is a file, not a directory; choose another --work-dir')
    key = osp.realpath(work_dir)
    if key in _held:
        return True
    created = not osp.isdir(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_FILE)
    while True:
        handle = open(path, 'a+')  # not 'w': the holder's description stays readable
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or 'a process that left no description'
            handle.close()
            raise WorkDirInUseError(f'{work_dir} is in use by another run ({holder}); wait until it ends or choose '
                                    'another --work-dir') from None
        try:
            in_place = osp.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            in_place = False
        if in_place:
            break
        handle.close()  # a refused run removed the file between our open and lock: lock the one in place now
    handle.seek(0)
    handle.truncate()
    handle.write(holder_description() + '\n')
    handle.flush()
    _held[key] = (handle, created)
    return True


def held_work_dirs() -> List[str]:
    """The real paths of the work dirs whose lock this process holds."""
    return list(_held)


def release_work_dir(work_dir: str) -> bool:
    """Gives up this process's lock of ``work_dir`` if the work dir holds nothing but the lock file (a run
    refused before it wrote anything): removes the lock file, and the folder when the lock created it.

    Returns:
        Whether the lock was given up (False when not held, or when the run wrote into the work dir).
    """
    key = osp.realpath(work_dir)
    if key not in _held or os.listdir(work_dir) != [LOCK_FILE]:
        return False
    handle, created = _held.pop(key)
    os.remove(osp.join(work_dir, LOCK_FILE))  # while still locked: see lock_work_dir
    handle.close()
    if created:
        os.rmdir(work_dir)
    return True
