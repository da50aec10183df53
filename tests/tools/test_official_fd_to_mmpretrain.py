"""``tools/model_converters/official_fd_to_mmpretrain.py`` as a user runs it: one line saying what the file is, our
checkpoint written, an existing output kept without ``--overwrite``, anything else refused with a clear error."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from ..converters.official_fd_layout import (clip_teacher_state, distilled_state, official_vit_state, tiny_beit,
                                             write_official_file)

pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = 'tools/model_converters/official_fd_to_mmpretrain.py'


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_converts_says_what_it_read_and_keeps_existing_outputs(tmp_path):
    src, dst = str(tmp_path / 'fd_clip_base_300ep.pth'), str(tmp_path / 'backbone.pth')
    state = distilled_state(official_vit_state(tiny_beit()), 32, clip_teacher_state(width=768, patch=16), 768)
    write_official_file(src, state, {'DEV': {'PRED_FEAT': 'CLIP_400M'}, 'TAG': 'fd_pretrain'})
    done = run(src, dst)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f'{src}: distilled FD ViT (2 blocks of width 32, patch 8) (teacher: CLIP ViT-B/16) at 32 px'
    assert 'wrote the student backbone (' in lines[1] and osp.isfile(dst)
    before = torch.load(dst, weights_only=True)
    again = run(src, dst)
    assert again.returncode == 2 and f'{dst} exists; pass --overwrite to replace it' in again.stderr
    assert torch.load(dst, weights_only=True)['state_dict'].keys() == before['state_dict'].keys()


def test_refuses_what_is_not_a_released_model(tmp_path):
    other, dst = str(tmp_path / 'mmengine.pth'), str(tmp_path / 'out.pth')
    torch.save({'state_dict': {'backbone.cls_token': torch.zeros(1, 1, 8)}, 'meta': {}}, other)
    done = run(other, dst)
    assert done.returncode == 1 and not osp.exists(dst)
    assert done.stderr.strip().startswith(f'[error] {other} is not a model of the official FD code: found keys under')
    assert 'Traceback' not in done.stderr
    missing = run(str(tmp_path / 'missing.pth'), dst)
    assert missing.returncode == 1 and 'checkpoint file not found' in missing.stderr
