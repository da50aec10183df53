"""Ending the processes a test started, and only those: a process and all its descendants, found by parent id.

Launchers such as torchrun start their workers in sessions of their own, so a process group does not reach them;
walking ``/proc`` from the process the test started does, and never touches a process of anyone else.
"""
import os
import signal
from typing import Dict, List


def _parents() -> Dict[int, int]:
    """pid -> parent pid of every process now running (Linux ``/proc``)."""
    parents = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:  # ended meanwhile
            continue
        # the command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'
        parents[int(entry)] = int(stat[stat.rindex(')') + 2:].split()[1])
    return parents


def descendants(pid: int) -> List[int]:
    """The children of ``pid``, their children and so on, parents before children."""
    children: Dict[int, List[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant: all are stopped first (SIGSTOP), so none starts another meanwhile,
    then killed. Processes that ended already are skipped."""
    tree = [pid]
    while True:  # stop what is found until a new look finds nothing more
        for process in tree:
            _signal(process, signal.SIGSTOP)
        more = [p for p in descendants(pid) if p not in tree]
        if not more:
            break
        tree += more
    for process in tree:
        _signal(process, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
