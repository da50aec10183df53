"""Converters never write over their input, nor over an existing file unless --overwrite is given."""
import argparse
import os.path as osp
import subprocess
import sys

import pytest
import torch

from ...helpers.scripts import REPO, load_script

output_path = load_script('tools/model_converters/output_path.py')
check_output_path, parse_converter_args = output_path.check_output_path, output_path.parse_converter_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument('src')
    p.add_argument('dst')
    return p


@pytest.mark.slow
def test_fd_to_backbone_refuses_to_write_over_its_input(tmp_path):
    src = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'student.cls_token': torch.zeros(1, 1, 8)}, 'meta': {}}, src)
    before = src.read_bytes()
    tool = osp.join(REPO, 'tools', 'model_converters', 'fd_to_backbone.py')
    proc = subprocess.run([sys.executable, tool, str(src), str(src)], capture_output=True, text=True)
    assert proc.returncode == 2 and f'{src} is the input {src}: refusing to write over it' in proc.stderr
    assert src.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path):
    src, dst = tmp_path / 'in.pth', tmp_path / 'out.pth'
    src.write_bytes(b'x')
    check_output_path(str(dst), [str(src)])  # new file: fine
    dst.write_bytes(b'y')
    with pytest.raises(FileExistsError, match=f'{dst} exists; pass --overwrite'):
        check_output_path(str(dst), [str(src)])
    check_output_path(str(dst), [str(src)], overwrite=True)
    with pytest.raises(SystemExit):
        parse_converter_args(parser(), [str(src), str(dst)])
    assert parse_converter_args(parser(), [str(src), str(dst), '--overwrite']).overwrite


def test_work_dir_input_stands_for_its_last_checkpoint(tmp_path):
    ckpt = tmp_path / 'epoch_3.pth'
    ckpt.write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt))
    with pytest.raises(FileExistsError, match='is the input'):
        check_output_path(str(ckpt), [str(tmp_path)], overwrite=True)
