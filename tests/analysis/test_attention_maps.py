"""Average attention maps and running means by value."""
import pytest
import torch

from fdclip_mm.analysis.attention_maps import average_attention_map, layer_attention_maps
from fdclip_mm.analysis.attention_statistics import RunningMean


def test_map_averages_heads_and_images_and_drops_the_class_token():
    attn = torch.zeros(2, 2, 3, 3)  # 2 images, 2 heads, CLS + 2 patches
    attn[0, 0, 1:, 1:] = torch.tensor([[1., 0.], [0., 1.]])
    attn[0, 1, 1:, 1:] = torch.tensor([[0., 1.], [1., 0.]])
    attn[1, 0, 1:, 1:] = torch.tensor([[1., 0.], [1., 0.]])
    attn[1, 1, 1:, 1:] = torch.tensor([[1., 0.], [1., 0.]])
    attn[:, :, 0, 0] = 5.0  # class token rows/columns must not leak in
    expected = torch.tensor([[3., 1.], [3., 1.]]) / 4
    assert torch.allclose(average_attention_map(attn), expected)
    mirrored = attn.clone()
    mirrored[..., 1:, 1:] = attn[..., 1:, 1:].flip(-1)  # keys in reverse order
    maps = layer_attention_maps([attn, mirrored])
    assert maps.shape == (2, 2, 2)
    assert torch.allclose(maps[1], torch.tensor([[1., 3.], [1., 3.]]) / 4)


def test_running_mean_weights_batches_by_images():
    mean = RunningMean()
    with pytest.raises(ValueError):
        mean.value
    mean.update(torch.tensor([[1.0, 2.0]]), count=1)
    mean.update(torch.tensor([[4.0, 2.0]]), count=3)
    assert mean.count == 4
    assert torch.equal(mean.value, torch.tensor([[3.25, 2.0]]))
