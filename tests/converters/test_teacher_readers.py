"""Each reader (found by name in TEACHER_READERS) + mmpretrain backbone against its family's reference
implementation on the same random file: open_clip (CLIP), timm (MAE / DINO / DeiT), transformers' Dinov2Model
(DINOv2); and the real DINOv2 weights."""
import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fdclip_mm.checkpoint import read_teacher_checkpoint
from fdclip_mm.models.feature_map import feature_tokens
from fdclip_mm.models.teachers import TEACHER_FAMILIES, teacher_config
from fdclip_mm.registry import MODELS, TEACHER_READERS
from ..helpers.checkpoints import tiny_vit_arch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_WEIGHTS = osp.join(REPO, 'data', 'demo', 'weights', 'dinov2_vits14.pth')
DEMO_IMAGES = osp.join(REPO, 'data', 'demo', 'images')


def tokens_of(cfg: dict, x: torch.Tensor) -> torch.Tensor:
    return feature_tokens(MODELS.build(cfg)(x), with_cls=True)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():  # norms and layer scales start at constants: move them too
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    model.eval()
    return model


def test_the_registry_holds_a_reader_per_family_and_refuses_other_names(tmp_path):
    """The teachers ask ``TEACHER_READERS`` by name; its first lookup imports the readers, which register."""
    TEACHER_READERS.import_from_location()
    assert sorted(TEACHER_READERS.module_dict) == ['clip', 'dinov2', 'esvit_swin', 'mmpretrain', 'timm_vit']
    assert {family['reader'] for family in TEACHER_FAMILIES.values()} <= set(TEACHER_READERS.module_dict)
    with pytest.raises(KeyError, match=r"unknown teacher checkpoint reader 'os'; choose one of \['clip', "):
        read_teacher_checkpoint('os', str(tmp_path / 'x.pth'))


# --- CLIP: OpenAI / open_clip towers -------------------------------------------------------------------------


def open_clip_tower(quick_gelu: bool) -> nn.Module:
    open_clip = pytest.importorskip('open_clip')
    act = open_clip.transformer.QuickGELU if quick_gelu else nn.GELU
    return randomise(
        open_clip.transformer.VisionTransformer(
            image_size=32,
            patch_size=8,
            width=64,
            layers=2,
            heads=4,
            mlp_ratio=4.0,
            output_dim=32,
            act_layer=act,
            output_tokens=True))


def open_clip_tokens(tower: nn.Module, x: torch.Tensor) -> torch.Tensor:
    proj, tower.proj = tower.proj, None
    with torch.no_grad():
        cls_token, patches = tower(x)
    tower.proj = proj
    return torch.cat([cls_token[:, None], patches], dim=1)


@pytest.mark.parametrize('quick_gelu, family', [(True, 'clip'), (False, 'open_clip')])
def test_clip_reader_matches_open_clip(tmp_path, quick_gelu, family):
    tower = open_clip_tower(quick_gelu)
    path = str(tmp_path / 'clip.pth')
    torch.save({f'visual.{k}': v for k, v in tower.state_dict().items()}, path)
    cfg = teacher_config(family, path, arch=tiny_vit_arch(64, 2, 4), patch_size=8, img_size=32)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tokens_of(cfg, x), open_clip_tokens(tower, x), atol=1e-5, rtol=1e-5)
    wrong = teacher_config(
        'open_clip' if quick_gelu else 'clip', path, arch=tiny_vit_arch(64, 2, 4), patch_size=8,
        img_size=32)  # the activation is not in the file: the wrong one changes the tokens
    assert not torch.allclose(tokens_of(wrong, x), open_clip_tokens(tower, x), atol=1e-3)


def test_clip_reader_refuses_tower_variants(tmp_path):
    tower = open_clip_tower(quick_gelu=False)
    state = {f'visual.{k}': v for k, v in tower.state_dict().items()}
    state['visual.transformer.resblocks.0.ls_1.gamma'] = torch.ones(64)  # a layer-scale tower
    path = str(tmp_path / 'ls.pth')
    torch.save(state, path)
    with pytest.raises(KeyError, match='ls_1.gamma'):
        read_teacher_checkpoint('clip', path)


# --- MAE / DINO / DeiT: timm layout ---------------------------------------------------------------------------


@pytest.mark.parametrize('wrap', ['mae', 'dino', 'deit'])
def test_timm_vit_reader_matches_timm(tmp_path, wrap):
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    reference = randomise(
        VisionTransformer(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10, global_pool='token'))
    state = reference.state_dict()
    wrapped = {
        'mae': {
            'model': {
                **state, 'decoder_embed.weight': torch.zeros(3),
                'mask_token': torch.zeros(1)
            }
        },
        'dino': {
            'teacher': {
                'backbone.' + k: v
                for k, v in state.items()
            }
        },
        'deit': {
            'model': state
        }
    }[wrap]
    path = str(tmp_path / f'{wrap}.pth')
    torch.save(wrapped, path)
    cfg = teacher_config('timm_vit', path, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_features(x)
    torch.testing.assert_close(tokens_of(cfg, x), expected, atol=1e-5, rtol=1e-5)


def test_timm_vit_reader_names_what_it_cannot_map(tmp_path):
    path = str(tmp_path / 'distilled.pth')
    torch.save({'model': {'cls_token': torch.zeros(1, 1, 8), 'dist_token': torch.zeros(1, 1, 8)}}, path)
    with pytest.raises(KeyError, match="distilled.pth: no mmpretrain VisionTransformer counterpart .*'dist_token'"):
        read_teacher_checkpoint('timm_vit', path)


# --- DINOv2: Hugging Face weights -----------------------------------------------------------------------------


@pytest.mark.parametrize('img_size', [28, 42, 56, (28, 56)])
def test_dinov2_reader_matches_transformers(tmp_path, img_size):
    transformers = pytest.importorskip('transformers')
    config = transformers.Dinov2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, patch_size=14, image_size=56)
    model = randomise(transformers.Dinov2Model(config))
    path = str(tmp_path / 'hf_dinov2.pth')
    torch.save({'dinov2.' + key: value for key, value in model.state_dict().items()}, path)
    size = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(pixel_values=x).last_hidden_state
    cfg = teacher_config('dinov2', path, arch=tiny_vit_arch(64, 2, 2), patch_size=14, img_size=img_size)
    torch.testing.assert_close(tokens_of(cfg, x), expected, rtol=0, atol=1e-5)


def hand_written_dinov2(sd: dict, x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """DINOv2 forward written out from the state-dict tensors (explicit softmax attention, erf GELU)."""
    patch = sd['embeddings.patch_embeddings.projection.weight'].shape[-1]
    x = F.conv2d(
        x,
        sd['embeddings.patch_embeddings.projection.weight'],
        sd['embeddings.patch_embeddings.projection.bias'],
        stride=patch)
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
        q, k, v = (
            linear(f'attention.attention.{n}', h).unflatten(-1, (num_heads, -1)).transpose(1, 2)
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
def test_dinov2_reader_matches_the_hand_written_forward(tmp_path, img_size):
    from ..helpers.checkpoints import dinov2_state_dict
    weights = dinov2_state_dict(hidden=64, layers=2, patch=14, image=56)  # 4x4 position grid in the file
    path = str(tmp_path / 'dinov2.pth')
    torch.save({'backbone.' + key: value for key, value in weights.items()}, path)
    size = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    cfg = teacher_config('dinov2', path, arch=tiny_vit_arch(64, 2, 2), patch_size=14, img_size=img_size)
    tokens = tokens_of(cfg, x)
    assert tokens.shape == (2, 1 + (size[0] // 14) * (size[1] // 14), 64) and tokens.dtype == torch.float32
    torch.testing.assert_close(tokens, hand_written_dinov2(weights, x, num_heads=2), rtol=0, atol=1e-5)


@pytest.mark.parametrize('prefix', ['', 'backbone.', 'dinov2.'])
def test_dinov2_reader_takes_prefixed_and_wrapped_state_dicts(tmp_path, prefix):
    from ..helpers.checkpoints import dinov2_state_dict
    weights = dinov2_state_dict(hidden=32, layers=2, patch=14, image=28)
    path = str(tmp_path / 'w.pth')
    torch.save({'state_dict': {prefix + key: value for key, value in weights.items()}}, path)
    state = read_teacher_checkpoint('dinov2', path)
    torch.testing.assert_close(state['pos_embed'], weights['embeddings.position_embeddings'])
    assert not any('mask_token' in key for key in state)


def test_dinov2_reader_refuses_other_files(tmp_path):
    clip_like = str(tmp_path / 'clip.pth')
    torch.save({'conv1.weight': torch.zeros(8, 3, 4, 4), 'class_embedding': torch.zeros(8)}, clip_like)
    with pytest.raises(ValueError, match=r'clip\.pth is not a DINOv2 backbone: missing keys \[embeddings'):
        read_teacher_checkpoint('dinov2', clip_like)
    from ..helpers.checkpoints import dinov2_state_dict
    weights = dinov2_state_dict()
    del weights['encoder.layer.1.mlp.fc2.bias']
    incomplete = str(tmp_path / 'incomplete.pth')
    torch.save(weights, incomplete)
    with pytest.raises(
            ValueError, match=r'incomplete\.pth is not a DINOv2 .*missing keys \[encoder\.layer\.1\.mlp\.fc2\.bias\]'):
        read_teacher_checkpoint('dinov2', incomplete)
    tensor_only = str(tmp_path / 'tensor.pth')
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(ValueError, match='does not hold a state dict'):
        read_teacher_checkpoint('dinov2', tensor_only)
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        read_teacher_checkpoint('dinov2', str(tmp_path / 'nowhere.pth'))


def test_mmpretrain_reader_strips_the_backbone_prefix(tmp_path, tiny_clip_teacher):
    teacher = MODELS.build(tiny_clip_teacher)
    path = str(tmp_path / 'mmpretrain.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in teacher.backbone.state_dict().items()}}, path)
    again = MODELS.build(dict(tiny_clip_teacher, checkpoint=path, reader='mmpretrain'))
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(again(x).patches, teacher(x).patches)


# --- the real DINOv2 ViT-S/14 of the demo (scripts/fetch_demo_data.py) -----------------------------------------


@pytest.mark.skipif(
    not osp.isfile(DEMO_WEIGHTS), reason='real DINOv2 weights not set up '
    '(run scripts/fetch_demo_data.py)')
def test_real_dinov2_tells_photos_apart():
    from skimage import io
    teacher = MODELS.build(teacher_config('dinov2', DEMO_WEIGHTS, arch='dinov2-s', patch_size=14, img_size=224))
    assert teacher.embed_dims == 384 and len(teacher.backbone.layers) == 12

    def crop(name: str, top: int, left: int) -> torch.Tensor:
        paths = glob.glob(osp.join(DEMO_IMAGES, '*', f'{name}.png'))
        img = torch.from_numpy(io.imread(paths[0])).permute(2, 0, 1)[None].float()
        img = F.interpolate(
            img, scale_factor=256 / min(img.shape[-2:]), mode='bilinear', align_corners=False,
            antialias=True)[..., top:top + 224, left:left + 224]
        mean, std = torch.tensor(teacher.mean).view(1, 3, 1, 1), torch.tensor(teacher.std).view(1, 3, 1, 1)
        return (img - mean) / std

    features = teacher(torch.cat([crop('astronaut', 0, 0), crop('astronaut', 32, 32), crop('coffee', 16, 16)]))
    assert features.grid == (16, 16) and torch.isfinite(features.patches).all()
    pooled = F.normalize(features.patches.mean((-1, -2)), dim=-1)
    same, different = 1 - pooled[0] @ pooled[1], 1 - pooled[0] @ pooled[2]
    assert different > 2 * same, (float(same), float(different))
