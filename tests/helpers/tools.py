"""Running the repository's tools (``tools/*.py``, the launch scripts) in child processes, as a user does.

The child sees no launcher variables of the parent, runs on one thread, and finds ``tests/tools/toy_modules.py``
(the toy model, dataset and hooks that toy configs import) on its ``PYTHONPATH``.
"""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from fdclip_mm.engine import is_cpu_only

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools')
TOY_DIR = osp.join(REPO, 'tests', 'tools')
sys.path.insert(0, TOY_DIR)
import toy_modules  # noqa: E402,F401  (re-exported: tests write toy configs with it)

sys.path.remove(TOY_DIR)

cpu_only = pytest.mark.skipif(not is_cpu_only(), reason='CPU-only behaviour')
#: Launcher variables (torchrun, Slurm, Open MPI) that a child must not inherit from the test's process.
DIST_ENV_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'SLURM_PROCID', 'SLURM_NTASKS',
                 'SLURM_NODELIST', 'SLURM_LOCALID', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
                 'OMPI_COMM_WORLD_LOCAL_RANK')


def free_port() -> int:
    """A TCP port nobody listens on now (the system's choice), for one launch's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tool_env(*, repo_on_path: bool = False, **extra) -> dict:
    """The parent's environment without launcher variables, one thread, ``toy_modules`` importable (and, with
    ``repo_on_path``, the ``tests`` package too, for ``python -c`` scripts); ``extra`` set last."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV_VARS}
    env['OMP_NUM_THREADS'] = '1'
    paths = (TOY_DIR, REPO if repo_on_path else None, env.get('PYTHONPATH'))
    env['PYTHONPATH'] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


def call(cmd, cwd, **env) -> subprocess.CompletedProcess:
    """Run a tool in ``cwd`` with :func:`tool_env` (``env`` set last); its exit code and output, whatever they are."""
    return subprocess.run([str(c) for c in cmd],
                          cwd=cwd,
                          env=tool_env(**env),
                          capture_output=True,
                          text=True,
                          timeout=180)


def run(cmd, cwd, **env) -> subprocess.CompletedProcess:
    """Run a tool; fail the test with the tail of its output if it fails."""
    proc = call(cmd, cwd, **env)
    assert proc.returncode == 0, f'{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


def refused(cmd, cwd, **env) -> str:
    """Run a tool that must refuse (exit code 1); returns its last stderr line."""
    proc = call(cmd, cwd, **env)
    assert proc.returncode == 1, f'{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stderr.strip().splitlines()[-1]


def train(cwd, *args, **env) -> subprocess.CompletedProcess:
    """``tools/train.py ARGS`` in ``cwd``."""
    return run([sys.executable, osp.join(TOOLS, 'train.py'), *args], cwd, **env)


def load_weights(path) -> dict:
    return torch.load(path, weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
