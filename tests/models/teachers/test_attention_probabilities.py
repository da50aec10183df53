"""Attention probabilities recomputed from an mmpretrain attention module's input, checked by value."""
import pytest
import torch
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import MultiheadAttention

from fdclip_mm.models.teachers.attention_probabilities import attention_probabilities, layer_attention_maps


def test_probabilities_reproduce_the_modules_output():
    torch.manual_seed(0)
    attn = MultiheadAttention(embed_dims=16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    probs = attention_probabilities(attn, x)
    assert probs.shape == (2, 2, 5, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 5))
    v = attn.qkv(x).reshape(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)[2]
    out = attn.proj((probs @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(out, attn(x), atol=1e-5, rtol=1e-5)  # the module's own (fused) computation


@pytest.mark.parametrize('heads, qkv_bias', [(1, True), (4, False)])
def test_probabilities_equal_the_explicit_softmax(heads, qkv_bias):
    torch.manual_seed(1)
    attn = MultiheadAttention(embed_dims=32, num_heads=heads, qkv_bias=qkv_bias).eval()
    x = torch.randn(3, 7, 32)
    weight = attn.qkv.weight
    bias = attn.qkv.bias if qkv_bias else torch.zeros(96)
    d = 32 // heads
    q = (x @ weight[:32].T + bias[:32]).reshape(3, 7, heads, d).transpose(1, 2)
    k = (x @ weight[32:64].T + bias[32:64]).reshape(3, 7, heads, d).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1)
    probs = attention_probabilities(attn, x)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, heads, 7))
    assert attention_probabilities(attn.bfloat16(), x.bfloat16()).dtype == torch.float32


def test_one_map_per_layer_and_errors():
    vit = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=3, num_heads=2, feedforward_channels=32),
        img_size=16,
        patch_size=8,
        out_type='raw')
    vit.eval()
    maps = layer_attention_maps(vit, torch.randn(1, 3, 16, 16))
    assert len(maps) == 3 and all(m.shape == (1, 2, 5, 5) for m in maps)
    assert not vit.layers[0].attn._forward_pre_hooks  # hooks removed
    with pytest.raises(TypeError, match='layers\\[i\\].attn'):
        layer_attention_maps(torch.nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(TypeError, match='packed qkv'):
        attention_probabilities(torch.nn.Linear(2, 2), torch.randn(1, 3, 2))
