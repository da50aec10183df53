"""RPB tables fitted to other patch grids: learned offsets kept exactly on smaller grids, resized on larger ones."""
import pytest
import torch

from fdclip_mm.models.backbones.rel_pos_bias import (RelativePositionBias, fit_rel_pos_bias_table, geometric_offsets,
                                                     geometric_resize_rel_pos_bias_table, num_relative_distances,
                                                     resize_rel_pos_bias_table)


def random_rpb(grid, heads=3, seed=0) -> RelativePositionBias:
    rpb = RelativePositionBias(grid, heads)
    with torch.no_grad():
        rpb.relative_position_bias_table.copy_(
            torch.randn(rpb.relative_position_bias_table.shape, generator=torch.Generator().manual_seed(seed)))
    return rpb


def test_smaller_grid_uses_the_learned_offsets_exactly():
    rpb = random_rpb((6, 5))
    big, small = rpb((6, 5))[0], rpb((4, 3))[0]  # (heads, 1 + N, 1 + N)
    # patch (r, c) of the small grid sits at the same place in the big one: every pair keeps its offset
    to_big = torch.tensor([1 + r * 5 + c for r in range(4) for c in range(3)])
    torch.testing.assert_close(small[:, 1:, 1:], big[:, to_big][:, :, to_big], rtol=0, atol=0)
    torch.testing.assert_close(small[:, 0, 1:], big[:, 0, to_big], rtol=0, atol=0)  # class-token rows
    torch.testing.assert_close(small[:, 1:, 0], big[:, to_big, 0], rtol=0, atol=0)
    assert small[:, 0, 0].equal(big[:, 0, 0])


def test_larger_grid_is_resized_and_mixed_grids_crop_then_resize():
    table = random_rpb((4, 4)).relative_position_bias_table.detach()
    torch.testing.assert_close(
        fit_rel_pos_bias_table(table, (4, 4), (6, 6)), resize_rel_pos_bias_table(table, (4, 4), (6, 6)))
    mixed = fit_rel_pos_bias_table(table, (4, 4), (3, 7))  # rows cropped to 3, columns stretched to 7
    assert mixed.shape == (num_relative_distances((3, 7)), 3)
    cropped = fit_rel_pos_bias_table(table, (4, 4), (3, 4))
    torch.testing.assert_close(mixed, resize_rel_pos_bias_table(cropped, (3, 4), (3, 7)))
    torch.testing.assert_close(mixed[-3:], table[-3:])
    with pytest.raises(ValueError, match='needs'):
        fit_rel_pos_bias_table(table[:-1], (4, 4), (3, 3))


def polynomial_table(positions, heads=2):
    """An RPB table (class rows last) whose head ``h`` holds the bicubic polynomial p_h at the offsets
    ``positions`` x ``positions`` (rows: vertical offset), and the polynomials."""

    def poly(h):
        return lambda y, x: 0.3 + 0.1 * h * x - 0.05 * y + 0.01 * x * y + 0.002 * (h + 1) * x**3 - 0.001 * y**2 * x

    grid = torch.tensor(positions, dtype=torch.float64)
    ys, xs = torch.meshgrid(grid, grid, indexing='ij')
    offsets = torch.stack([poly(h)(ys, xs) for h in range(heads)]).float()  # (heads, n, n)
    table = torch.cat([offsets.reshape(heads, -1).T, torch.arange(3 * heads, dtype=torch.float32).view(3, heads)])
    return table, [poly(h) for h in range(heads)]


@pytest.mark.parametrize('src,dst', [(4, 7), (7, 16), (14, 32), (8, 5)])
def test_geometric_resize_places_the_learned_offsets_as_the_official_code(src, dst):
    """The official load_pretrained's interpolation: the learned offsets sit at geometric positions, a bicubic
    interpolating spline through them is read at the integer offsets (clamped to the source's span). A cubic spline
    reproduces a bicubic polynomial exactly, so the resized table is the polynomial at the clamped targets."""
    source, target = geometric_offsets(src, dst)
    assert len(source) == 2 * src - 1 and len(target) == 2 * dst - 1 and source[src - 1] == 0
    assert target == list(range(-(dst - 1), dst))
    if dst > src:  # spread out towards the new edge (the ratio is at most 1.5), near offsets stay near
        assert src - 1 < source[-1] <= dst - 1 + 1e-3 and source[src] == 1.0
    table, polys = polynomial_table(source)
    resized = geometric_resize_rel_pos_bias_table(table, (src, src), (dst, dst))
    assert resized.shape == (num_relative_distances((dst, dst)), 2)
    edge = source[-1]
    t = torch.tensor(target, dtype=torch.float64).clamp(-edge, edge)
    ys, xs = torch.meshgrid(t, t, indexing='ij')
    for h, poly in enumerate(polys):
        torch.testing.assert_close(resized[:-3, h], poly(ys, xs).flatten().float(), rtol=1e-5, atol=1e-5)
    assert resized[-3:].equal(table[-3:])


def test_geometric_resize_agrees_with_mmpretrains_beit_code(monkeypatch):
    """mmpretrain's BEiT resize (written against scipy's interp2d, removed in SciPy 1.14) given interp2d as SciPy
    documents its replacement on regular grids: the same table."""
    from mmpretrain.models.utils import embed
    from scipy import interpolate

    def interp2d(x, y, z, kind):
        assert kind == 'cubic'
        spline = interpolate.RectBivariateSpline(y, x, z, kx=3, ky=3, s=0)
        return lambda dx, dy: spline(dy, dx)

    monkeypatch.setattr(interpolate, 'interp2d', interp2d)
    table = random_rpb((7, 7), heads=3).relative_position_bias_table.detach()
    theirs = embed.resize_relative_position_bias_table(13, 23, table[:-3], 3)
    ours = geometric_resize_rel_pos_bias_table(table, (7, 7), (12, 12))
    torch.testing.assert_close(ours[:-3], theirs, rtol=0, atol=1e-6)
    assert geometric_resize_rel_pos_bias_table(table, (7, 7), (7, 7)) is table
    with pytest.raises(ValueError, match='square grids only'):
        geometric_resize_rel_pos_bias_table(table, (7, 7), (6, 8))
