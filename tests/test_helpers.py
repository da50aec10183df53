"""The suite's own helpers (``tests/helpers``) where a mistake would reach beyond the test."""
import os
import subprocess
import time

from .helpers.processes import descendants, kill_tree


def _sleeps(pids) -> int:
    """How many of ``pids`` run ``sleep``."""
    count = 0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/comm') as f:
                count += f.read().strip() == 'sleep'
        except FileNotFoundError:
            pass
    return count


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_kill_tree_ends_the_tree_across_sessions_and_nothing_else():
    tree = subprocess.Popen(['bash', '-c', 'setsid sleep 300 & (setsid bash -c "sleep 301 & sleep 302") & sleep 303'],
                            start_new_session=True)
    other = subprocess.Popen(['sleep', '304'])
    try:
        deadline = time.time() + 30
        while _sleeps(descendants(tree.pid)) < 4 and time.time() < deadline:
            time.sleep(0.05)
        found = descendants(tree.pid)
        assert _sleeps(found) == 4 and other.pid not in found and os.getpid() not in found
        kill_tree(tree.pid)
        assert tree.wait(timeout=30) == -9
        time.sleep(0.2)
        assert not [pid for pid in found if _running(pid)]
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
