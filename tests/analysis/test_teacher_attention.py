"""The teachers' attention maps: probabilities of every layer, bf16 close to fp32; and, on the real DINOv2
weights (when scripts/fetch_demo_data.py has run), a spread of head distances that a random ViT lacks."""
import os.path as osp

import pytest
import torch

from fdclip_mm.analysis.analyse import analyse_attention
from fdclip_mm.analysis.image_folder import iter_image_batches, list_images
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.teachers import teacher_config
from fdclip_mm.registry import MODELS

from ..conftest import tiny_teacher_cfg

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_WEIGHTS = osp.join(REPO, 'data', 'demo', 'weights', 'dinov2_vits14.pth')
DEMO_IMAGES = osp.join(REPO, 'data', 'demo', 'images')


@pytest.mark.parametrize('family, patch, image', [('clip', 8, 32), ('dinov2', 14, 28)])
def test_teacher_attention_maps_are_probabilities_of_every_layer(tmp_path, family, patch, image):
    teacher = MODELS.build(tiny_teacher_cfg(family, str(tmp_path / 't.pth'), patch=patch, image=image))
    x = torch.randn(2, 3, image, image)
    maps = teacher.forward_attention(x)
    tokens = 1 + (image // patch)**2
    assert len(maps) == 2 and all(m.shape == (2, 2, tokens, tokens) and m.dtype == torch.float32 for m in maps)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, tokens))
    bf16 = MODELS.build(tiny_teacher_cfg(family, str(tmp_path / 't.pth'), patch=patch, image=image,
                                         dtype='bfloat16')).forward_attention(x)
    assert bf16[0].dtype == torch.float32 and torch.allclose(bf16[0], maps[0], atol=0.05)


@pytest.mark.skipif(
    not osp.isfile(DEMO_WEIGHTS), reason='run scripts/fetch_demo_data.py for the real teacher')
def test_real_dinov2_heads_spread_and_random_vit_heads_do_not():
    teacher = MODELS.build(teacher_config('dinov2', DEMO_WEIGHTS, arch='dinov2-s', patch_size=14, img_size=112))
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
