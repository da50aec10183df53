"""One run per work dir: the lock is exclusive across processes, taken by rank 0 only, released by any end."""
import os
import signal
import subprocess
import sys

import pytest

from fdclip_mm.engine import WorkDirInUseError, lock_work_dir, release_work_dir
from fdclip_mm.engine.work_dir_lock import LOCK_FILE

HOLDER = 'import sys; from fdclip_mm.engine import lock_work_dir; lock_work_dir(sys.argv[1]); print("held", ' \
    'flush=True); sys.stdin.read()'


@pytest.mark.slow
def test_a_second_process_is_refused_until_the_first_ends_however_it_ends(tmp_path):
    work_dir = tmp_path / 'run'
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(work_dir)],
                              stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == 'held'
    assert f'pid {holder.pid} ' in (work_dir / LOCK_FILE).read_text()
    with pytest.raises(
            WorkDirInUseError,
            match=rf'{work_dir} is in use by another run \(pid {holder.pid} on \S+ since [0-9: -]+: '
            r'-c .*\); wait until it ends or choose another --work-dir'):
        lock_work_dir(str(work_dir))
    holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    assert lock_work_dir(str(work_dir)) is True
    assert lock_work_dir(str(work_dir)) is True  # this process again: already held
    assert f'pid {os.getpid()} ' in (work_dir / LOCK_FILE).read_text()
    again = subprocess.run([sys.executable, '-c', HOLDER, str(work_dir)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and f'in use by another run (pid {os.getpid()} ' in again.stderr


def test_only_rank_0_of_a_job_takes_it(tmp_path, monkeypatch):
    work_dir = tmp_path / 'job'
    for launcher, variable in (('pytorch', 'RANK'), ('slurm', 'SLURM_PROCID'), ('mpi', 'OMPI_COMM_WORLD_RANK')):
        monkeypatch.setenv(variable, '1')
        assert lock_work_dir(str(work_dir), launcher) is False
    assert not work_dir.exists()  # the other ranks of a job neither lock nor write
    monkeypatch.setenv('RANK', '0')
    assert lock_work_dir(str(work_dir), 'pytorch') is True and (work_dir / LOCK_FILE).is_file()


def test_a_work_dir_that_is_a_file_is_named(tmp_path):
    path = tmp_path / 'results.txt'
    path.write_text('x')
    with pytest.raises(NotADirectoryError, match=f'work_dir {path} is a file, not a directory'):
        lock_work_dir(str(path))
    assert path.read_text() == 'x'


@pytest.mark.slow
def test_a_run_refused_before_writing_leaves_nothing_behind(tmp_path):
    work_dir = tmp_path / 'new' / 'run'
    assert lock_work_dir(str(work_dir)) and release_work_dir(str(work_dir))
    assert not work_dir.exists() and (tmp_path / 'new').is_dir()  # the folder the lock created, only
    assert not release_work_dir(str(work_dir))  # no longer held
    used = tmp_path / 'used'
    lock_work_dir(str(used))
    (used / '20261207_101010').mkdir()
    assert not release_work_dir(str(used)) and (used / LOCK_FILE).is_file()  # it wrote: the lock stays
    existing = tmp_path / 'existing'
    existing.mkdir()
    assert lock_work_dir(str(existing)) and release_work_dir(str(existing))
    assert existing.is_dir() and not os.listdir(existing)  # a folder it did not create stays
    # another process locks the lock file that is in place, whatever this one removed before
    holder = HOLDER.replace('sys.stdin.read()', 'pass')
    again = subprocess.run([sys.executable, '-c', holder, str(existing)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == 'held'
