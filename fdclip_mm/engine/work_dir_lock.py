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
On network file systems ``flock`` needs their lock support (NFSv4 maps it to byte-range locks).
"""
import fcntl
import os
import os.path as osp
import shlex
import socket
import sys
import time
from typing import IO, Dict

from .refusals import RunRefused

LOCK_FILE = '.fdclip_run.lock'
#: Where each launcher puts the process's global rank.
RANK_VARIABLES = {'pytorch': 'RANK', 'slurm': 'SLURM_PROCID', 'mpi': 'OMPI_COMM_WORLD_RANK'}

_held: Dict[str, IO] = {}  # real path of a work dir -> its open, locked lock file


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
    os.makedirs(work_dir, exist_ok=True)
    handle = open(osp.join(work_dir, LOCK_FILE), 'a+')  # not 'w': the holder's description stays readable
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or 'a process that left no description'
        handle.close()
        raise WorkDirInUseError(f'{work_dir} is in use by another run ({holder}); wait until it ends or choose '
                                'another --work-dir') from None
    handle.seek(0)
    handle.truncate()
    handle.write(holder_description() + '\n')
    handle.flush()
    _held[key] = handle
    return True
