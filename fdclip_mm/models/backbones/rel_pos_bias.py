"""Relative position bias (RPB) with a class token, as in BEiT.

The table holds ``(2h-1)(2w-1)`` entries for patch-to-patch offsets plus 3 for cls->token, token->cls and
cls->cls, one column per head. Parameter names match mmpretrain's ``BEiTViT`` so checkpoints load both ways.
"""
from functools import lru_cache
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Grid = Tuple[int, int]


def num_relative_distances(grid: Grid) -> int:
    """Rows of the RPB table for a ``grid`` of patches (3 extra rows for the class token)."""
    return (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3


@lru_cache(maxsize=16)
def relative_position_index(grid: Grid, device: torch.device = torch.device('cpu')) -> torch.Tensor:
    """Index into the RPB table for each (query, key) pair of ``1 + h*w`` tokens, class token first; cached per
    grid and device (a detector's varying input sizes do not copy it to the GPU at every step)."""
    if device != torch.device('cpu'):
        return relative_position_index(grid).to(device)
    h, w = grid
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += h - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    n = num_relative_distances(grid)
    index = torch.zeros((h * w + 1, ) * 2, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, :] = n - 3
    index[:, 0] = n - 2
    index[0, 0] = n - 1
    return index


def _offset_grid(table: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The patch-offset rows of a ``grid``'s RPB table as a (heads, 2h-1, 2w-1) map (class rows left out)."""
    expected = num_relative_distances(grid)
    if table.shape[0] != expected:
        raise ValueError(f'RPB table has {table.shape[0]} rows, but a {grid} grid needs {expected}')
    return table[:-3].T.reshape(table.shape[1], 2 * grid[0] - 1, 2 * grid[1] - 1)


def _with_class_rows(offsets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """An RPB table from a (heads, 2h-1, 2w-1) offset map and the class-token rows of ``table``."""
    return torch.cat([offsets.reshape(offsets.shape[0], -1).T.to(table.dtype), table[-3:]], dim=0)


def resize_rel_pos_bias_table(table: torch.Tensor, src: Grid, dst: Grid) -> torch.Tensor:
    """Resizes an RPB table from a ``src`` patch grid to a ``dst`` one (bicubic; class rows kept).

    mmpretrain's ``resize_relative_position_bias_table`` handles square grids only and loops over heads
    through scipy; we interpolate all heads at once with torch so any rectangular grid works.
    """
    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return table
    offsets = _offset_grid(table, src)
    resized = F.interpolate(
        offsets[None].float(), size=(2 * dst[0] - 1, 2 * dst[1] - 1), mode='bicubic', align_corners=False)
    return _with_class_rows(resized[0], table)


def fit_rel_pos_bias_table(table: torch.Tensor, src: Grid, dst: Grid) -> torch.Tensor:
    """An RPB table of a ``src`` patch grid made to serve a ``dst`` grid.

    Offsets that exist in the ``src`` table keep their learned entries: along a side where ``dst`` is not
    longer, the table is cropped to the offsets that grid has (exact, as a smaller input of the same model
    would use them). Along a longer side the (cropped) table is then resized bicubically, as BEiT does when it
    loads a checkpoint for a larger input. The class-token rows are kept.
    """
    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return table
    kept = (min(src[0], dst[0]), min(src[1], dst[1]))
    if kept != src:
        offsets = _offset_grid(table, src)
        offsets = offsets[:, src[0] - kept[0]:src[0] + kept[0] - 1, src[1] - kept[1]:src[1] + kept[1] - 1]
        table = _with_class_rows(offsets, table)
    return resize_rel_pos_bias_table(table, kept, dst)


def geometric_offsets(src_side: int, dst_side: int) -> Tuple[List[float], List[float]]:
    """Where the ``2 src_side - 1`` offsets of a learned table sit among the ``2 dst_side - 1`` offsets of a new
    one, as BEiT and the official FD fine-tuning place them: a geometric progression whose ratio makes the largest
    offset reach (at most) ``dst_side - 1``, so that near offsets stay near. Returns (source positions, target
    positions), both symmetric around 0."""
    src_half, dst_half = (2 * src_side - 1) // 2, (2 * dst_side - 1) // 2
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        ratio = (left + right) / 2.0
        if (1.0 - ratio**src_half) / (1.0 - ratio) > dst_half:
            right = ratio
        else:
            left = ratio
    distances, current = [], 1.0
    for i in range(src_half):
        distances.append(current)
        current += ratio**(i + 1)
    source = [-d for d in reversed(distances)] + [0.0] + distances
    target = [float(t) for t in range(-dst_half, dst_half + 1)]
    return source, target


def geometric_resize_rel_pos_bias_table(table: torch.Tensor, src: Grid, dst: Grid) -> torch.Tensor:
    """Resizes an RPB table from a square ``src`` patch grid to a square ``dst`` one as the official FD
    ``load_pretrained`` (and BEiT) do: each head's offset map is a bicubic interpolating spline over the geometric
    positions of :func:`geometric_offsets`, evaluated at the target's integer offsets (outside the source's range
    at its edge values); the class-token rows are kept.

    The official code calls ``scipy.interpolate.interp2d(kind='cubic')``, which SciPy 1.14 removed; SciPy names
    ``RectBivariateSpline`` (the same FITPACK interpolating spline on a rectangular grid) as its replacement on
    regular grids, which this uses. mmpretrain's and mmseg's BEiT resize their tables with ``interp2d`` and fail
    on SciPy >= 1.14.
    """
    from scipy.interpolate import RectBivariateSpline

    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return table
    if src[0] != src[1] or dst[0] != dst[1]:
        raise ValueError(f'the geometric RPB resize takes square grids only, got {src} -> {dst}')
    source, target = geometric_offsets(src[0], dst[0])
    offsets = _offset_grid(table, src).double().cpu().numpy()
    degree = min(3, len(source) - 1)  # a 2 x 2 grid has 3 offsets per side: too few for a cubic (scipy refuses)
    resized = [RectBivariateSpline(source, source, head, kx=degree, ky=degree, s=0)(target, target) for head in offsets]
    return _with_class_rows(torch.tensor(np.stack(resized), dtype=torch.float32, device=table.device), table)


def infer_grid(table_rows: int) -> Grid:
    """The square patch grid whose RPB table has ``table_rows`` rows."""
    side = (int(round((table_rows - 3)**0.5)) + 1) // 2
    if num_relative_distances((side, side)) != table_rows:
        raise ValueError(f'an RPB table of {table_rows} rows does not belong to a square patch grid')
    return side, side


def select_token_bias(bias: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Rows and columns of a (1, heads, T, T) bias for the tokens each sample keeps: (B, heads, K, K).

    Args:
        bias: Bias over all tokens, class token first.
        token_ids: (B, K) indices of the kept tokens among the T (class token included).
    """
    batch, kept = token_ids.shape
    heads, total = bias.shape[1], bias.shape[-1]
    bias = bias.expand(batch, -1, -1, -1)
    rows = bias.gather(2, token_ids[:, None, :, None].expand(batch, heads, kept, total))
    return rows.gather(3, token_ids[:, None, None, :].expand(batch, heads, kept, kept))


class RelativePositionBias(nn.Module):
    """One RPB table for a fixed patch grid; ``forward`` gives the additive attention bias.

    Used once per backbone (shared by all layers) or once per attention layer.

    Args:
        grid: Patch grid (h, w) the table is built for.
        num_heads: Attention heads.
    """

    def __init__(self, grid: Grid, num_heads: int) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_relative_distances(self.grid), num_heads))
        self.register_buffer('relative_position_index', relative_position_index(self.grid), persistent=False)

    def forward(self, grid: Grid) -> torch.Tensor:
        """Bias (1, heads, 1 + h*w, 1 + h*w) for a ``grid`` of patches (see :func:`fit_rel_pos_bias_table`)."""
        grid = tuple(grid)
        table, index = self.relative_position_bias_table, self.relative_position_index
        if grid != self.grid:
            table = fit_rel_pos_bias_table(table, self.grid, grid)
            index = relative_position_index(grid, table.device)
        n = index.shape[0]
        return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)

    def extra_repr(self) -> str:
        return f'grid={self.grid}, num_heads={self.num_heads}'
