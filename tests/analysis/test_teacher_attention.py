"""The teachers' explicit attention path: same tokens as SDPA, valid probabilities; and, on the real DINOv2
weights (when scripts/fetch_demo_data.py has run), a spread of head distances that a random ViT lacks."""
import os.path as osp

import pytest
import torch

from fdclip_mm.analysis.analyse import analyse_attention
from fdclip_mm.analysis.image_folder import iter_image_batches, list_images
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.teachers.clip_teacher import CLIPTeacher
from fdclip_mm.models.teachers.dinov2_teacher import DINOv2Teacher

from ..conftest import dinov2_state_dict

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_WEIGHTS = osp.join(REPO, 'data', 'demo', 'weights', 'dinov2_vits14.pth')
DEMO_IMAGES = osp.join(REPO, 'data', 'demo', 'images')


def explicit_tokens(teacher, blocks, embed, final_norm, x):
    h = embed(x)
    for block in blocks:
        h, attn = block(h, return_attn=True)
        assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
    return final_norm(h)


@pytest.fixture
def dinov2_checkpoint(tmp_path):
    path = str(tmp_path / 'dinov2.pth')
    torch.save(dinov2_state_dict(hidden=32, layers=2, patch=14, image=28), path)
    return path


def test_clip_explicit_path_equals_sdpa(tiny_clip_checkpoint):
    teacher = CLIPTeacher(tiny_clip_checkpoint, num_heads=2)
    x = torch.randn(2, 3, 32, 32)
    tokens = explicit_tokens(teacher, teacher.transformer.resblocks, teacher._embed, teacher.ln_post, x)
    assert torch.allclose(tokens, teacher(x), atol=1e-5)
    maps = teacher.forward_attention(x)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 17, 17) and maps[0].dtype == torch.float32


def test_dinov2_explicit_path_equals_sdpa(dinov2_checkpoint):
    teacher = DINOv2Teacher(dinov2_checkpoint, img_size=28, num_heads=2)
    x = torch.randn(2, 3, 28, 28)
    tokens = explicit_tokens(teacher, teacher.encoder.layer, teacher.embeddings, teacher.layernorm, x)
    assert torch.allclose(tokens, teacher(x), atol=1e-5)
    maps = teacher.forward_attention(x)
    assert len(maps) == 2 and maps[1].shape == (2, 2, 5, 5)
    bf16 = DINOv2Teacher(dinov2_checkpoint, img_size=28, num_heads=2, dtype='bfloat16').forward_attention(x)
    assert bf16[0].dtype == torch.float32 and torch.allclose(bf16[0], maps[0], atol=0.05)


@pytest.mark.skipif(
    not osp.isfile(DEMO_WEIGHTS), reason='run scripts/fetch_demo_data.py for the real teacher')
def test_real_dinov2_heads_spread_and_random_vit_heads_do_not():
    teacher = DINOv2Teacher(DEMO_WEIGHTS, img_size=112)
    random_vit = FDViT(
        arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
        img_size=112,
        patch_size=14,
        pos_embed='ape')
    paths = list_images(osp.join(DEMO_IMAGES, 'val'))
    spreads = {}
    for name, model in (('dinov2', teacher), ('random', random_vit)):
        mean, std = (teacher.mean, teacher.std)
        stats = analyse_attention(model, iter_image_batches(paths, 112, mean, std))
        assert stats.distances.shape == (12, 6)
        spreads[name] = (stats.distances.max(1).values - stats.distances.min(1).values).mean().item()
    assert spreads['dinov2'] > 15  # pixels between the most local and the most global head of a layer
    assert spreads['random'] < 3
