"""Attention distance by value on hand-made attention."""
import itertools
import math

import pytest
import torch

from fdclip_mm.analysis.attention_distance import attention_distance, layer_attention_distances, patch_distances


def with_cls(patch_attn: torch.Tensor, cls_mass: float = 0.0) -> torch.Tensor:
    """(B, H, N, N) patch attention -> (B, H, 1+N, 1+N) with ``cls_mass`` of every row on the class token."""
    B, H, N, _ = patch_attn.shape
    attn = torch.zeros(B, H, N + 1, N + 1)
    attn[..., 1:, 1:] = patch_attn * (1 - cls_mass)
    attn[..., 1:, 0] = cls_mass
    attn[..., 0, :] = 1.0 / (N + 1)
    return attn


def brute_force_uniform(grid, patch):
    cells = list(itertools.product(range(grid[0]), range(grid[1])))
    total = sum(math.dist(a, b) for a in cells for b in cells)
    return patch * total / len(cells)**2


def test_patch_distances_are_pixels_between_centres():
    dist = patch_distances((2, 3), 16)
    assert dist.shape == (6, 6)
    assert dist[0, 1] == pytest.approx(16)  # right neighbour
    assert dist[0, 3] == pytest.approx(16)  # the patch below
    assert dist[0, 5] == pytest.approx(16 * math.sqrt(5))
    assert torch.equal(dist, dist.T) and torch.all(dist.diagonal() == 0)


def test_identity_attention_has_distance_zero():
    attn = with_cls(torch.eye(9).expand(2, 3, 9, 9))
    assert torch.equal(attention_distance(attn, (3, 3), 14), torch.zeros(2, 3))


def test_uniform_attention_has_the_mean_pair_distance():
    # 2x2 grid: per query 0, 1, 1 and sqrt(2) patches away.
    attn = with_cls(torch.full((1, 1, 4, 4), 0.25))
    assert attention_distance(attn, (2, 2), 16).item() == pytest.approx(16 * (2 + math.sqrt(2)) / 4, rel=1e-6)
    attn = with_cls(torch.full((1, 2, 12, 12), 1 / 12))
    assert attention_distance(attn, (3, 4), 14)[0].tolist() == pytest.approx(
        [brute_force_uniform((3, 4), 14)] * 2, rel=1e-5)


def test_class_token_mass_is_renormalised_or_counts_as_zero():
    attn = with_cls(torch.full((1, 1, 4, 4), 0.25), cls_mass=0.5)
    expected = 16 * (2 + math.sqrt(2)) / 4
    assert attention_distance(attn, (2, 2), 16).item() == pytest.approx(expected, rel=1e-6)
    assert attention_distance(attn, (2, 2), 16, renormalize=False).item() == pytest.approx(expected / 2, rel=1e-6)


def test_one_hot_to_a_fixed_offset():
    # Every query of a 1x5 row attends to the patch two to its right (wrapping): distances 2,2,2,3,3 patches.
    patch_attn = torch.zeros(1, 1, 5, 5)
    for q in range(5):
        patch_attn[0, 0, q, (q + 2) % 5] = 1
    assert attention_distance(with_cls(patch_attn), (1, 5), 10).item() == pytest.approx(10 * 12 / 5)


def test_layers_average_images_and_check_shapes():
    local = with_cls(torch.eye(4).expand(1, 2, 4, 4))
    uniform = with_cls(torch.full((1, 2, 4, 4), 0.25))
    out = layer_attention_distances([torch.cat([local, uniform]), uniform], (2, 2), 1)
    half = (2 + math.sqrt(2)) / 4
    assert out.shape == (2, 2)
    assert torch.allclose(out, torch.tensor([[half / 2] * 2, [half] * 2]))
    with pytest.raises(ValueError, match='does not match'):
        attention_distance(uniform, (3, 3), 16)
