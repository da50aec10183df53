"""Every unreadable checkpoint is named with its problem."""
import os

import pytest
import torch
from torch import nn

from fdclip_mm.checkpoint import CheckpointFileError, read_checkpoint, read_state_dict
from fdclip_mm.converters.dinov2_weights import load_dinov2_checkpoint


class RunsCode:

    def __reduce__(self):
        return (os.system, ('echo this must never run', ))


@pytest.fixture
def good(tmp_path):
    path = tmp_path / 'good.pth'
    torch.save({'state_dict': {'backbone.w': torch.ones(64, 64), 'head.b': torch.zeros(3)}}, path)
    return path


def message_of(path) -> str:
    with pytest.raises((CheckpointFileError, FileNotFoundError)) as info:
        read_checkpoint(str(path))
    text = str(info.value)
    assert str(path) in text
    assert 'weights_only=False' not in text and 'weights_only' not in text
    return text


def test_each_unreadable_file_is_named_with_what_is_wrong(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / 'truncated.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'notes.pth').write_text('these are my notes, not weights\n')
    (tmp_path / 'empty.pth').write_bytes(b'')
    torch.save({'x': RunsCode()}, tmp_path / 'code.pth')
    legacy = tmp_path / 'legacy.pth'
    torch.save({'x': torch.zeros(8)}, legacy, _use_new_zipfile_serialization=False)
    (tmp_path / 'legacy_cut.pth').write_bytes(legacy.read_bytes()[:-40])

    assert 'truncated or corrupt' in message_of(tmp_path / 'truncated.pth')
    assert 'truncated or corrupt' in message_of(tmp_path / 'legacy_cut.pth')
    assert "is not a PyTorch checkpoint (it starts with b'these are my not" in message_of(tmp_path / 'notes.pth')
    assert 'empty (0 bytes)' in message_of(tmp_path / 'empty.pth')
    code = message_of(tmp_path / 'code.pth')
    assert 'holds Python objects that are not weights' in code and 'system' in code
    assert 'not found' in message_of(tmp_path / 'missing.pth')
    assert torch.equal(read_checkpoint(str(legacy))['x'], torch.zeros(8))


def test_teacher_reader_names_a_text_file_without_unsafe_advice(tmp_path):
    path = tmp_path / 'dinov2_vits14.pth'
    path.write_text('404: Not Found')
    with pytest.raises(CheckpointFileError, match='dinov2_vits14.pth is not a PyTorch checkpoint') as info:
        load_dinov2_checkpoint(str(path))
    assert 'weights_only' not in str(info.value)


def test_read_state_dict_with_prefix(good):
    assert set(read_state_dict(str(good))) == {'backbone.w', 'head.b'}
    assert set(read_state_dict(str(good), 'backbone.')) == {'w'}
    with pytest.raises(CheckpointFileError, match=r"no key starting with 'neck\.'.*'backbone\.', 'head\.'"):
        read_state_dict(str(good), 'neck.')


def test_read_state_dict_refuses_a_file_without_tensors(tmp_path):
    path = tmp_path / 'meta.pth'
    torch.save({'meta': {'epoch': 3}, 'state_dict': {'a': 1}}, path)
    with pytest.raises(CheckpointFileError, match='meta.pth holds no state dict of tensors'):
        read_state_dict(str(path))


def test_reader_never_unpickles_code_in_runner_checkpoints(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'a': torch.zeros(1)}, 'meta': {'hook': RunsCode()}}, path)
    with pytest.raises(CheckpointFileError, match='not weights'):
        read_checkpoint(str(path))


@pytest.mark.slow
def test_a_torchscript_archive_is_named_as_such_by_every_reader(tmp_path):
    """``torch.jit.save`` files (OpenAI's CLIP ``ViT-*.pt`` format) are not called truncated: the message says
    what the file is and which reader reads it."""
    import subprocess
    import sys

    from fdclip_mm.checkpoint import read_teacher_checkpoint
    path = tmp_path / 'ViT-T-16.pt'
    torch.jit.save(torch.jit.trace(nn.Linear(4, 2), torch.randn(1, 4)), str(path))
    expected = r'ViT-T-16.pt is a TorchScript archive \(what torch.jit.save writes.*teacher reader \'clip\''
    message = message_of(path)
    assert 'truncated' not in message and 'TorchScript archive' in message
    for reader in ('dinov2', 'timm_vit', 'esvit_swin', 'mmpretrain'):
        with pytest.raises(CheckpointFileError, match=expected):
            read_teacher_checkpoint(reader, str(path))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    converter = os.path.join(repo, 'tools', 'model_converters', 'fd_to_backbone.py')
    proc = subprocess.run([sys.executable, converter, str(path),
                           str(tmp_path / 'out.pth')],
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0 and 'is a TorchScript archive' in proc.stderr
    assert not (tmp_path / 'out.pth').exists()
