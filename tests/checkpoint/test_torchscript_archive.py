"""TorchScript archives read without running their code: traced and scripted modules, refused globals, bad zips."""
import os
import pickle
import zipfile

import pytest
import torch
from torch import nn

from fdclip_mm.checkpoint import read_torchscript_tensors

# torch.jit.trace/script/save are deprecated, but they are how such archives (OpenAI's CLIP files) were written.
pytestmark = pytest.mark.filterwarnings('ignore::FutureWarning', 'ignore::torch.jit.TracerWarning')


class Tower(nn.Module):
    """Nested modules with parameters, a buffer and a non-tensor attribute (pickled by scripting)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 2, 2)
        self.blocks = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 6))
        self.register_buffer('scale', torch.arange(6, dtype=torch.float64))
        self.depth = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x).flatten(2).transpose(1, 2)) * self.scale.float()


@pytest.mark.parametrize('kind', ['traced', 'scripted'])
def test_every_tensor_of_the_module_tree_in_its_dtype(tmp_path, kind):
    torch.manual_seed(0)
    model = Tower().eval()
    scripted = torch.jit.trace(model, torch.randn(1, 3, 4, 4)) if kind == 'traced' else torch.jit.script(model)
    path = str(tmp_path / 'tower.pt')
    torch.jit.save(scripted.half() if kind == 'traced' else scripted, path)
    tensors = read_torchscript_tensors(path)
    expected = model.half().state_dict() if kind == 'traced' else model.state_dict()
    assert set(tensors) == set(expected)
    for key, value in expected.items():
        assert tensors[key].dtype == value.dtype and torch.equal(tensors[key], value), key


class _Exploit:
    """Unpickling it would run a shell command that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def _write_archive(path: str, data_pkl: bytes) -> None:
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('evil/data.pkl', data_pkl)
        archive.writestr('evil/constants.pkl', pickle.dumps((), protocol=2))
        archive.writestr('evil/version', '3\n')


def test_refuses_exploit_archive(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pt')
    _write_archive(path, pickle.dumps(_Exploit(str(marker)), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r'system'):
        read_torchscript_tensors(path)
    assert not marker.exists()


def test_refuses_exploit_nested_in_module_tree(tmp_path):
    """A refused global inside a ``__torch__`` module's attributes is still refused."""
    marker = tmp_path / 'pwned'
    payload = pickle.dumps(_Exploit(str(marker)), protocol=2)[2:-1]  # without PROTO and STOP
    data_pkl = b'\x80\x02c__torch__\nCLIP\n)\x81}X\x06\x00\x00\x00visual' + payload + b'sb.'
    path = str(tmp_path / 'evil.pt')
    _write_archive(path, data_pkl)
    with pytest.raises(pickle.UnpicklingError, match=r'system'):
        read_torchscript_tensors(path)
    assert not marker.exists()


def test_refuses_a_zip_that_is_no_archive_and_big_endian_tensors(tmp_path):
    path = str(tmp_path / 'two.pt')
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('a/data.pkl', pickle.dumps({}, protocol=2))
        archive.writestr('b/data.pkl', pickle.dumps({}, protocol=2))
    with pytest.raises(ValueError, match=r"two\.pt is not a TorchScript archive.*\['a', 'b'\]"):
        read_torchscript_tensors(path)
    path = str(tmp_path / 'big.pt')
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('m/data.pkl', pickle.dumps({}, protocol=2))
        archive.writestr('m/byteorder', 'big')
    with pytest.raises(ValueError, match="byte order 'big'"):
        read_torchscript_tensors(path)


def test_refuses_an_archive_whose_tensor_data_is_missing(tmp_path):
    torch.manual_seed(0)
    source = str(tmp_path / 'whole.pt')
    torch.jit.save(torch.jit.trace(Tower().eval(), torch.randn(1, 3, 4, 4)), source)
    path = str(tmp_path / 'cut.pt')
    with zipfile.ZipFile(source) as whole, zipfile.ZipFile(path, 'w') as cut:
        kept = [n for n in whole.namelist() if '/data/' not in n or not n.endswith('/0')]
        for name in kept:
            cut.writestr(name, whole.read(name))
    with pytest.raises(pickle.UnpicklingError, match=r'tensor data .*/data/0 is missing'):
        read_torchscript_tensors(path)
