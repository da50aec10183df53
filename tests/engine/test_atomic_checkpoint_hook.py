"""A kill during a checkpoint write leaves the previous checkpoint and ``last_checkpoint`` valid; resume
works."""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from fdclip_mm.engine import AtomicCheckpointHook, atomic_write
from ..helpers.config_lists import REPO
from ..helpers.tools import toy_modules


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the dying process."""


def toy_runner(work_dir, max_iters: int = 6, resume: bool = False) -> Runner:
    cfg = Config.fromfile(toy_modules.write_toy_config(work_dir + '.py', max_iters=max_iters))
    cfg.custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)
    cfg.custom_hooks = []
    cfg.default_hooks.checkpoint = dict(
        type='fdclip_mm.AtomicCheckpointHook', interval=2, by_epoch=False, max_keep_ckpts=1)
    cfg.work_dir = work_dir
    cfg.resume = resume
    return Runner.from_cfg(cfg)


def load(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / 'f.bin'
    atomic_write(b'old', path)
    real_replace = os.replace

    def killed_replace(src, dst):
        with open(src, 'r+b') as f:  # the tmp file holds part of the data when the kill comes
            f.truncate(1)
        raise Killed()

    monkeypatch.setattr(os, 'replace', killed_replace)
    with pytest.raises(Killed):
        atomic_write(b'new contents', path)
    monkeypatch.setattr(os, 'replace', real_replace)
    assert path.read_bytes() == b'old' and os.listdir(tmp_path) == ['f.bin']
    atomic_write('text', path)
    assert path.read_text() == 'text'
    (tmp_path / 'plain').write_text('x')  # same permissions as a plain write (the umask's)
    assert os.stat(path).st_mode & 0o777 == os.stat(tmp_path / 'plain').st_mode & 0o777


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_previous_and_resume_matches(tmp_path, monkeypatch):
    reference = toy_runner(str(tmp_path / 'reference'))
    reference.train()
    expected = load(tmp_path / 'reference' / 'iter_6.pth')['state_dict']
    assert glob.glob(str(tmp_path / 'reference' / '*.pth')) == [str(tmp_path / 'reference' / 'iter_6.pth')]

    work = tmp_path / 'work'
    real_replace = os.replace

    def killed_replace(src, dst):
        if str(dst).endswith('iter_4.pth'):
            with open(src, 'r+b') as f:
                f.truncate(os.path.getsize(src) // 2)
            raise Killed()
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', killed_replace)
    with pytest.raises(Killed):
        toy_runner(str(work)).train()
    monkeypatch.setattr(os, 'replace', real_replace)
    assert not osp.exists(work / 'iter_4.pth')
    assert open(work / 'last_checkpoint').read() == str(work / 'iter_2.pth')
    assert load(work / 'iter_2.pth')['meta']['iter'] == 2  # the previous checkpoint survived, whole
    stale = work / '.iter_4.pth.abc.fdclip-tmp'  # what a real kill -9 would leave behind
    stale.write_bytes(b'partial')

    resumed = toy_runner(str(work), resume=True)
    resumed.train()
    assert not stale.exists() and not glob.glob(str(work / '*tmp*'))
    final = load(work / 'iter_6.pth')
    assert final['message_hub']['runtime_info']['keep_ckpt_ids'] == [6]
    assert sorted(p for p in os.listdir(work) if p.endswith('.pth')) == ['iter_6.pth']
    for key, value in expected.items():
        torch.testing.assert_close(final['state_dict'][key], value, rtol=0, atol=0)


def test_default_runtime_uses_the_atomic_hook():
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'default_runtime.py'))
    assert cfg.default_hooks.checkpoint.type == 'fdclip_mm.AtomicCheckpointHook'
    assert AtomicCheckpointHook(interval=1).backend_args == dict(backend='fdclip_mm_atomic_local')
    assert AtomicCheckpointHook(interval=1, out_dir='s3://bucket/x').backend_args is None


@pytest.mark.slow
def test_a_failed_write_names_the_file_and_the_free_space(tmp_path):
    """A file size limit (or a full disk) during a save: Python says only 'File too large'. The error names the
    file and the free space; the previous file stays and no temporary file is left."""
    target = tmp_path / 'epoch_1.pth'
    atomic_write(b'previous', target)
    code = ('import resource, sys; from fdclip_mm.engine import atomic_write; '
            'resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); atomic_write(b"x" * 100000, sys.argv[1])')
    proc = subprocess.run([sys.executable, '-c', code, str(target)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf'OSError: \[Errno 27\] File too large while writing {target} \(\d+\.\d [GMK]iB free on its file system\)',
        last), proc.stderr[-3000:]
    assert target.read_bytes() == b'previous' and os.listdir(tmp_path) == ['epoch_1.pth']
