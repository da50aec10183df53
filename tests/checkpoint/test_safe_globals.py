"""``register_checkpoint_globals``: Runner checkpoints load with ``weights_only=True``, nothing else does."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.utils import digit_version

from fdclip_mm.checkpoint import checkpoint_safe_globals, register_checkpoint_globals

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): runner_checkpoint is built once
pytestmark = pytest.mark.xdist_group('test_safe_globals')

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_DIR = osp.join(REPO_ROOT, 'tests', 'tools')


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (TOY_DIR, REPO_ROOT, env.get('PYTHONPATH')) if p)
    return env


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory) -> str:
    """A real mmengine Runner checkpoint (4 iterations of the toy model, with validation and save_best)."""
    sys.path.insert(0, TOY_DIR)
    try:
        import toy_modules
    finally:
        sys.path.remove(TOY_DIR)
    root = tmp_path_factory.mktemp('ckpt_globals')
    config = toy_modules.write_toy_config(str(root / 'toy.py'), max_iters=4)
    proc = subprocess.run(
        [sys.executable,
         osp.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir',
         str(root / 'work')],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return str(root / 'work' / 'iter_4.pth')


@pytest.mark.slow
def test_runner_checkpoint_needs_the_globals(runner_checkpoint):
    """Without registration (fresh interpreter, fdclip_mm not imported) torch 2.6+ refuses the file."""
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        pytest.skip('torch.load defaults to weights_only=False before torch 2.6')
    code = ('import pickle, torch\n'
            'try:\n'
            f'    torch.load({runner_checkpoint!r})\n'
            'except pickle.UnpicklingError as e:\n'
            '    print("REFUSED", e)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert 'REFUSED' in proc.stdout, proc.stdout + proc.stderr
    assert 'HistoryBuffer' in proc.stdout


@pytest.mark.slow
def test_runner_checkpoint_loads_weights_only(runner_checkpoint):
    register_checkpoint_globals()
    ckpt = torch.load(runner_checkpoint, weights_only=True)
    assert set(ckpt) >= {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'}
    assert ckpt['meta']['iter'] == 4
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert np.isfinite(buffer.mean()) and buffer.current() == buffer.data[0][-1]
    assert set(buffer._statistics_methods) >= {'min', 'max', 'current', 'mean'}
    assert isinstance(ckpt['message_hub']['runtime_info']['best_score'], np.floating)
    # the resume path: mmengine's CheckpointLoader calls torch.load without weights_only
    ckpt = CheckpointLoader.load_checkpoint(runner_checkpoint, map_location='cpu')
    assert torch.equal(ckpt['state_dict']['linear.weight'],
                       torch.load(runner_checkpoint, weights_only=True)['state_dict']['linear.weight'])


def test_safe_globals_are_narrow():
    names = []
    for entry in checkpoint_safe_globals():
        names.append(entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}')
    assert sorted(names) == sorted([
        'mmengine.logging.history_buffer.HistoryBuffer',
        'numpy.ndarray',
        'numpy.dtype',
        'numpy.core.multiarray._reconstruct',
        'numpy._core.multiarray._reconstruct',
        'numpy.core.multiarray.scalar',
        'numpy._core.multiarray.scalar',
        f'{type(np.dtype(np.float64)).__module__}.{type(np.dtype(np.float64)).__qualname__}',
        f'{type(np.dtype(np.int64)).__module__}.{type(np.dtype(np.int64)).__qualname__}',
        'builtins.getattr',
    ])
    assert getattr not in [e[0] if isinstance(e, tuple) else e for e in checkpoint_safe_globals()]


def test_register_is_idempotent():
    register_checkpoint_globals()
    before = len(torch.serialization.get_safe_globals())
    register_checkpoint_globals()
    assert len(torch.serialization.get_safe_globals()) == before


class _RunsShell:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class _GetsAttribute:
    """Unpickling this would call ``getattr(obj, name)``."""

    def __init__(self, obj, name: str) -> None:
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


def test_code_execution_is_still_refused(tmp_path):
    register_checkpoint_globals()
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': _RunsShell(str(marker))}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # torch's default
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')  # what Runner.resume uses
    assert not marker.exists()


@pytest.mark.parametrize('obj,name', [(HistoryBuffer, '__init__'), (HistoryBuffer, '_set_default_statistics'),
                                      (np.ndarray, 'tofile'), (torch.Tensor, 'new_empty')])
def test_getattr_only_serves_history_buffer_methods(tmp_path, obj, name):
    register_checkpoint_globals()
    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': _GetsAttribute(obj, name)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    # the four statistics methods are served
    torch.save({'x': _GetsAttribute(HistoryBuffer, 'mean')}, path)
    assert torch.load(path, weights_only=True)['x'] is HistoryBuffer.mean
