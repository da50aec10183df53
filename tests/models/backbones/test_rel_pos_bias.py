"""RPB tables fitted to other patch grids: learned offsets kept exactly on smaller grids, resized on larger ones."""
import pytest
import torch

from fdclip_mm.models.backbones.rel_pos_bias import (RelativePositionBias, fit_rel_pos_bias_table,
                                                     num_relative_distances, resize_rel_pos_bias_table)


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
