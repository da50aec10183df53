"""CLIPTeacher: numerics against open_clip's vision tower, frozen behaviour, sizes and errors."""
import pytest
import torch
from torch import nn

from fdclip_mm.models.teachers.clip_teacher import CLIP_MEAN, CLIP_STD, CLIPTeacher
from fdclip_mm.registry import MODELS

open_clip = pytest.importorskip('open_clip')

WIDTH, LAYERS, HEADS, PATCH, RES = 64, 2, 4, 8, 32
NUM_PATCHES = (RES // PATCH)**2


def _open_clip_tower(quick_gelu: bool) -> nn.Module:
    """A tiny open_clip vision tower with random weights, LayerNorm affine parameters included."""
    torch.manual_seed(0)
    act_layer = open_clip.transformer.QuickGELU if quick_gelu else nn.GELU
    tower = open_clip.transformer.VisionTransformer(
        image_size=RES,
        patch_size=PATCH,
        width=WIDTH,
        layers=LAYERS,
        heads=HEADS,
        mlp_ratio=4.0,
        output_dim=32,
        act_layer=act_layer,
        output_tokens=True).eval()
    norms = {name for name, module in tower.named_modules() if isinstance(module, nn.LayerNorm)}
    with torch.no_grad():
        for name, param in tower.named_parameters():
            module_name, _, param_name = name.rpartition('.')
            if module_name in norms:
                param.copy_((1.0 if param_name == 'weight' else 0.0) + 0.2 * torch.randn_like(param))
            else:
                param.copy_(0.1 * torch.randn_like(param))
    return tower


def _open_clip_tokens(tower: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All tokens after ``ln_post`` by open_clip's own forward: pooled CLS (``proj`` removed) + tokens."""
    proj, tower.proj = tower.proj, None
    try:
        with torch.no_grad():
            cls_token, patch_tokens = tower(x)
    finally:
        tower.proj = proj
    return torch.cat([cls_token[:, None], patch_tokens], dim=1)


def _save(tower: nn.Module, path) -> str:
    torch.save({f'visual.{k}': v for k, v in tower.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> str:
    return _save(_open_clip_tower(quick_gelu=True), tmp_path_factory.mktemp('clip') / 'clip_tiny.pth')


@pytest.fixture(scope='module')
def teacher(checkpoint) -> CLIPTeacher:
    return CLIPTeacher(checkpoint, num_heads=HEADS)


@pytest.mark.parametrize('quick_gelu', [True, False])
def test_matches_open_clip(tmp_path, quick_gelu):
    tower = _open_clip_tower(quick_gelu)
    teacher = CLIPTeacher(_save(tower, tmp_path / 'clip.pth'), quick_gelu=quick_gelu, num_heads=HEADS)
    x = torch.randn(2, 3, RES, RES)
    out = teacher(x)
    assert out.shape == (2, 1 + NUM_PATCHES, WIDTH)
    torch.testing.assert_close(out, _open_clip_tokens(tower, x), atol=1e-5, rtol=1e-5)


def test_wrong_activation_differs(tmp_path):
    """The activation is not in the state dict: the wrong choice must change the tokens."""
    tower = _open_clip_tower(quick_gelu=True)
    teacher = CLIPTeacher(_save(tower, tmp_path / 'clip.pth'), quick_gelu=False, num_heads=HEADS)
    x = torch.randn(2, 3, RES, RES)
    assert not torch.allclose(teacher(x), _open_clip_tokens(tower, x), atol=1e-3)


def test_architecture_from_checkpoint(checkpoint, teacher):
    assert (teacher.embed_dims, teacher.patch_size, teacher.num_layers) == (WIDTH, PATCH, LAYERS)
    assert teacher.native_img_size == teacher.img_size == (RES, RES)
    assert teacher.patch_grid((RES, RES)) == (RES // PATCH, RES // PATCH)
    assert CLIPTeacher(checkpoint).num_heads == WIDTH // 64
    assert teacher.mean == pytest.approx([v * 255 for v in CLIP_MEAN])
    assert teacher.std == pytest.approx([v * 255 for v in CLIP_STD])
    assert 'proj' not in teacher.state_dict()


def test_builds_from_registry(checkpoint):
    """Scoped type name, as configs of any default scope (mmpretrain, mmdet, mmseg) write it."""
    assert MODELS.get('CLIPTeacher') is CLIPTeacher
    teacher = MODELS.build(dict(type='fdclip_mm.CLIPTeacher', checkpoint=checkpoint, num_heads=HEADS))
    assert isinstance(teacher, CLIPTeacher)


def test_frozen(teacher):
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training
    assert not any(m.training for m in teacher.modules())
    x = torch.randn(1, 3, RES, RES, requires_grad=True)
    out = teacher(x)
    assert out.grad_fn is None and not out.requires_grad


def test_bfloat16(checkpoint, teacher):
    x = torch.randn(2, 3, RES, RES)
    bf16 = CLIPTeacher(checkpoint, num_heads=HEADS, dtype='bfloat16')
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    out = bf16(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, teacher(x), atol=0.15, rtol=0.05)


def test_interpolated_position_embedding(checkpoint, teacher):
    big = CLIPTeacher(checkpoint, num_heads=HEADS, img_size=2 * RES)
    out = big(torch.randn(1, 3, 2 * RES, 2 * RES))
    assert out.shape == (1, 1 + 4 * NUM_PATCHES, WIDTH)
    assert big.native_img_size == (RES, RES) and big.img_size == (2 * RES, 2 * RES)
    assert torch.equal(big.positional_embedding[0], teacher.positional_embedding[0])
    wide = CLIPTeacher(checkpoint, num_heads=HEADS, img_size=(RES, 2 * RES))
    assert wide.patch_grid((RES, 2 * RES)) == (RES // PATCH, 2 * RES // PATCH)
    assert wide(torch.randn(1, 3, RES, 2 * RES)).shape == (1, 1 + 2 * NUM_PATCHES, WIDTH)


def test_input_size_mismatch(teacher):
    with pytest.raises(ValueError, match=r'\(32, 32\).*\(64, 64\)'):
        teacher(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='not divisible'):
        teacher.patch_grid((36, 36))


def test_img_size_not_divisible(checkpoint):
    with pytest.raises(ValueError, match='not divisible'):
        CLIPTeacher(checkpoint, img_size=36)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pt'):
        CLIPTeacher(str(tmp_path / 'absent.pt'))


def test_unsupported_tower_variant(tmp_path):
    """open_clip's layer-scale towers have tensors the OpenAI layout lacks: refused by name."""
    tower = _open_clip_tower(quick_gelu=False)
    state_dict = {f'visual.{k}': v for k, v in tower.state_dict().items()}
    state_dict['visual.transformer.resblocks.0.ls_1.gamma'] = torch.ones(WIDTH)
    path = str(tmp_path / 'layer_scale.pth')
    torch.save(state_dict, path)
    with pytest.raises(ValueError, match=r'layer_scale\.pth.*ls_1\.gamma'):
        CLIPTeacher(path, quick_gelu=False, num_heads=HEADS)
