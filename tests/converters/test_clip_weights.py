"""The safe CLIP checkpoint reader: TorchScript archives, state-dict variants, refusals, the converter."""
import os
from collections import OrderedDict
from typing import Dict

import pytest
import torch
from mmpretrain.models.utils import QuickGELU
from torch import nn

from fdclip_mm.checkpoint import CheckpointFileError, is_torchscript_archive, read_torchscript_tensors
from fdclip_mm.converters.clip_weights import load_clip_visual_state_dict
from fdclip_mm.models.feature_map import feature_tokens
from fdclip_mm.models.teachers import teacher_config
from fdclip_mm.registry import MODELS
from ..helpers.scripts import load_script

WIDTH, LAYERS, PATCH, RES, HEADS = 64, 2, 16, 32, 4

# torch.jit.trace/script/save are deprecated, but they are how OpenAI's archives were written.
# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): traced_archive is built once
pytestmark = [
    pytest.mark.filterwarnings('ignore::FutureWarning', 'ignore::torch.jit.TracerWarning'),
    pytest.mark.xdist_group('test_clip_weights')
]


class OpenAIBlock(nn.Module):
    """OpenAI's ``ResidualAttentionBlock``: sequence-first, ``nn.MultiheadAttention``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict([('c_fc', nn.Linear(width, width * 4)), ('gelu', QuickGELU()),
                         ('c_proj', nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class OpenAITransformer(nn.Module):

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[OpenAIBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class OpenAIVisual(nn.Module):
    """OpenAI's ``VisionTransformer`` whose forward returns all tokens after ``ln_post``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, WIDTH, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(WIDTH))
        self.positional_embedding = nn.Parameter(torch.randn((RES // PATCH)**2 + 1, WIDTH))
        self.ln_pre = nn.LayerNorm(WIDTH)
        self.transformer = OpenAITransformer(WIDTH, LAYERS, HEADS)
        self.ln_post = nn.LayerNorm(WIDTH)
        self.proj = nn.Parameter(torch.randn(WIDTH, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x)


class OpenAICLIP(nn.Module):
    """A tiny CLIP in OpenAI's layout, with a text tower whose keys the reader must ignore."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = OpenAIVisual()
        self.transformer = OpenAITransformer(32, 1, 2)
        self.token_embedding = nn.Embedding(10, 32)
        self.positional_embedding = nn.Parameter(torch.randn(5, 32))
        self.ln_final = nn.LayerNorm(32)
        self.text_projection = nn.Parameter(torch.randn(32, 32))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _openai_model() -> OpenAICLIP:
    """Random weights (LayerNorm affine included) that fp16 represents exactly."""
    torch.manual_seed(0)
    model = OpenAICLIP().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('weight') and param.dim() == 1:
                param.copy_(1 + 0.2 * torch.randn_like(param))
            else:
                param.copy_(0.1 * torch.randn_like(param))
            param.copy_(param.half().float())
    return model


def _visual_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k[len('visual.'):]: v for k, v in model.state_dict().items() if k.startswith('visual.')}


@pytest.fixture(scope='module')
def openai_model() -> OpenAICLIP:
    return _openai_model()


@pytest.fixture(scope='module')
def traced_archive(tmp_path_factory, openai_model) -> str:
    """``torch.jit.save`` of the traced model in fp16, like OpenAI's published ``ViT-*.pt``."""
    path = str(tmp_path_factory.mktemp('jit') / 'ViT-T-16.pt')
    with torch.no_grad():
        traced = torch.jit.trace(_openai_model(), torch.randn(1, 3, RES, RES))
    torch.jit.save(traced.half(), path)
    return path


@pytest.fixture
def state_dict_file(tmp_path, openai_model) -> str:
    path = str(tmp_path / 'clip.pth')
    torch.save(openai_model.state_dict(), path)
    return path


def test_detects_torchscript_archive(traced_archive, state_dict_file):
    assert is_torchscript_archive(traced_archive)
    assert not is_torchscript_archive(state_dict_file)


def test_reads_traced_archive(traced_archive, openai_model):
    state_dict = load_clip_visual_state_dict(traced_archive)
    expected = _visual_tensors(openai_model)
    assert set(state_dict) == set(expected)
    for key, value in expected.items():
        assert state_dict[key].dtype == torch.float16, key
        assert torch.equal(state_dict[key].float(), value), key


def test_reads_scripted_archive(tmp_path, openai_model):
    """Scripted modules also pickle non-tensor attributes (ints, typed lists via ``build_intlist``)."""
    path = str(tmp_path / 'scripted.pt')
    torch.jit.save(torch.jit.script(_openai_model().visual), path)
    tensors = read_torchscript_tensors(path)
    expected = _visual_tensors(openai_model)
    assert set(tensors) == set(expected)
    assert all(torch.equal(tensors[k], v) for k, v in expected.items())
    assert set(load_clip_visual_state_dict(path)) == set(expected)


def test_teacher_from_archive_matches_openai_model(traced_archive, openai_model):
    arch = dict(embed_dims=WIDTH, num_layers=LAYERS, num_heads=HEADS, feedforward_channels=4 * WIDTH)
    teacher = MODELS.build(teacher_config('clip', traced_archive, arch=arch, patch_size=PATCH, img_size=RES))
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        expected = openai_model.visual(x)
    torch.testing.assert_close(feature_tokens(teacher(x), with_cls=True), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('wrap', ['bare', 'state_dict', 'model', 'module_prefix', 'visual_only', 'safetensors'])
def test_state_dict_variants(tmp_path, openai_model, wrap):
    full = openai_model.state_dict()
    saved = {
        'bare': full,
        'state_dict': {
            'state_dict': full,
            'epoch': 3
        },
        'model': {
            'model': full
        },
        'module_prefix': {
            'state_dict': {
                f'module.{k}': v
                for k, v in full.items()
            }
        },
        'visual_only': _visual_tensors(openai_model),
        'safetensors': full,
    }[wrap]
    if wrap == 'safetensors':
        safetensors_torch = pytest.importorskip('safetensors.torch')
        path = str(tmp_path / 'open_clip_model.safetensors')
        safetensors_torch.save_file({k: v.contiguous() for k, v in saved.items()}, path)
    else:
        path = str(tmp_path / 'ckpt.pth')
        torch.save(saved, path)
    state_dict = load_clip_visual_state_dict(path)
    expected = _visual_tensors(openai_model)
    assert set(state_dict) == set(expected)
    assert all(torch.equal(state_dict[k], v) for k, v in expected.items())


class _Exploit:
    """Unpickling it would run a shell command that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_refuses_exploit_state_dict(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    torch.save({'visual.conv1.weight': torch.zeros(1), 'payload': _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointFileError, match='evil.pth holds Python objects that are not weights'):
        load_clip_visual_state_dict(path)
    assert not marker.exists()


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nowhere' / 'ViT-B-16.pt')
    with pytest.raises(FileNotFoundError, match='ViT-B-16.pt'):
        load_clip_visual_state_dict(path)


def test_not_a_clip_tower(tmp_path):
    path = str(tmp_path / 'dino.pth')
    torch.save({'cls_token': torch.zeros(1, 1, 8), 'blocks.0.attn.qkv.weight': torch.zeros(24, 8)}, path)
    with pytest.raises(ValueError, match=r'dino\.pth.*missing keys.*conv1\.weight'):
        load_clip_visual_state_dict(path)


def test_incomplete_block(tmp_path, openai_model):
    state_dict = dict(openai_model.state_dict())
    del state_dict['visual.transformer.resblocks.1.mlp.c_proj.bias']
    path = str(tmp_path / 'broken.pth')
    torch.save(state_dict, path)
    with pytest.raises(ValueError, match=r'transformer\.resblocks\.1\.mlp\.c_proj\.bias'):
        load_clip_visual_state_dict(path)


@pytest.mark.parametrize('fp32', [False, True])
def test_converter(tmp_path, traced_archive, openai_model, capsys, fp32):
    dst = str(tmp_path / 'out' / 'teacher.pth')
    load_script('tools/model_converters/clip_to_teacher.py').main([traced_archive, dst] + (['--fp32'] if fp32 else []))
    assert 'width 64, layers 2, patch 16, resolution 32' in capsys.readouterr().out
    state_dict = torch.load(dst, map_location='cpu', weights_only=True)
    expected = _visual_tensors(openai_model)
    assert set(state_dict) == set(expected)
    dtype = torch.float32 if fp32 else torch.float16
    for key, value in expected.items():
        assert state_dict[key].dtype == dtype and torch.equal(state_dict[key].float(), value), key
    assert set(load_clip_visual_state_dict(dst)) == set(expected)
