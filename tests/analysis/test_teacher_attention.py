"""The teachers' attention maps: the probabilities each layer really used (its output recomputed from them),
equal to open_clip's and transformers' own, bf16 close to fp32; and, on the real DINOv2 weights (when
scripts/fetch_demo_data.py has run), a spread of head distances that a random ViT lacks."""
import os.path as osp

import pytest
import torch
from torch import nn

from fdclip_mm.analysis.attention_statistics import analyse_attention
from fdclip_mm.analysis.image_folder import iter_image_batches, list_images
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.teachers import teacher_config
from fdclip_mm.registry import MODELS
from ..helpers.checkpoints import tiny_teacher_cfg, tiny_vit_arch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_WEIGHTS = osp.join(REPO, 'data', 'demo', 'weights', 'dinov2_vits14.pth')
DEMO_IMAGES = osp.join(REPO, 'data', 'demo', 'images')


def randomise(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():  # norms and layer scales start at constants: move them too
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model.eval()


@pytest.mark.parametrize('family, patch, image', [('clip', 8, 32), ('dinov2', 14, 28)])
def test_maps_are_the_probabilities_each_layer_used(tmp_path, family, patch, image):
    teacher = MODELS.build(tiny_teacher_cfg(family, str(tmp_path / 't.pth'), patch=patch, image=image))
    x = torch.randn(2, 3, image, image)
    maps = teacher.forward_attention(x)
    tokens = 1 + (image // patch)**2
    assert len(maps) == 2 and all(m.shape == (2, 2, tokens, tokens) and m.dtype == torch.float32 for m in maps)
    calls = []
    handles = [
        layer.attn.register_forward_hook(lambda module, args, out: calls.append((module, args[0], out)))
        for layer in teacher.backbone.layers
    ]
    teacher(x)
    for handle in handles:
        handle.remove()
    for probs, (attn, inputs, output) in zip(maps, calls):
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, tokens))
        v = attn.qkv(inputs).reshape(2, tokens, 3, attn.num_heads, attn.head_dims).permute(2, 0, 3, 1, 4)[2]
        mixed = (probs @ v).transpose(1, 2).reshape(2, tokens, attn.embed_dims)
        torch.testing.assert_close(attn.gamma1(attn.proj(mixed)), output, atol=1e-5, rtol=1e-5)
    bf16 = MODELS.build(tiny_teacher_cfg(family, str(tmp_path / 't.pth'), patch=patch, image=image,
                                         dtype='bfloat16')).forward_attention(x)
    assert bf16[0].dtype == torch.float32 and torch.allclose(bf16[0], maps[0], atol=0.05)


def test_clip_maps_equal_open_clip_attention_weights(tmp_path):
    open_clip = pytest.importorskip('open_clip')
    tower = randomise(
        open_clip.transformer.VisionTransformer(
            image_size=32,
            patch_size=8,
            width=64,
            layers=2,
            heads=4,
            mlp_ratio=4.0,
            output_dim=32,
            act_layer=open_clip.transformer.QuickGELU))
    path = str(tmp_path / 'clip.pth')
    torch.save({f'visual.{k}': v for k, v in tower.state_dict().items()}, path)
    teacher = MODELS.build(teacher_config('clip', path, arch=tiny_vit_arch(64, 2, 4), patch_size=8, img_size=32))
    x = torch.randn(2, 3, 32, 32)
    inputs = []
    handles = [
        block.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
        for block in tower.transformer.resblocks
    ]
    with torch.no_grad():
        tower(x)
        expected = []
        for block, h in zip(tower.transformer.resblocks, inputs):
            h = block.ln_1(h)
            expected.append(block.attn(h, h, h, need_weights=True, average_attn_weights=False)[1])
    for handle in handles:
        handle.remove()
    maps = teacher.forward_attention(x)
    assert len(maps) == len(expected) == 2
    for probs, reference in zip(maps, expected):
        torch.testing.assert_close(probs, reference, atol=1e-5, rtol=1e-5)


def test_dinov2_maps_equal_transformers_attentions(tmp_path):
    transformers = pytest.importorskip('transformers')
    config = transformers.Dinov2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        patch_size=14,
        image_size=42,
        attn_implementation='eager')
    model = randomise(transformers.Dinov2Model(config))
    path = str(tmp_path / 'dinov2.pth')
    torch.save(model.state_dict(), path)
    x = torch.randn(2, 3, 42, 42)
    with torch.no_grad():
        expected = model(pixel_values=x, output_attentions=True).attentions
    teacher = MODELS.build(teacher_config('dinov2', path, arch=tiny_vit_arch(64, 2, 2), patch_size=14, img_size=42))
    maps = teacher.forward_attention(x)
    assert len(maps) == len(expected) == 2
    for probs, reference in zip(maps, expected):
        torch.testing.assert_close(probs, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not osp.isfile(DEMO_WEIGHTS), reason='run scripts/fetch_demo_data.py for the real teacher')
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
