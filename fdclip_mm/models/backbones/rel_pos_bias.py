"""BEiT's relative position bias (RPB) for any patch grid: (2h-1)(2w-1) patch offsets + 3 class-token rows."""
from functools import lru_cache
from typing import List, Optional, Tuple

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
    """BEiT's index into the RPB table for each (query, key) pair of ``1 + h*w`` tokens, class token first; cached
    per grid and device (a detector's varying input sizes do not copy it to the GPU at every step)."""
    if device != torch.device('cpu'):
        return relative_position_index(grid).to(device)
    (h, w), n = grid, num_relative_distances(grid)
    ys, xs = (c.flatten() for c in torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij'))
    offsets = (ys[:, None] - ys + h - 1) * (2 * w - 1) + xs[:, None] - xs + w - 1
    index = F.pad(offsets, (1, 0, 1, 0), value=n - 2)  # token -> cls
    index[0, 1:] = n - 3  # cls -> token
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
    """Resizes an RPB table from a ``src`` patch grid to a ``dst`` one (bicubic, all heads at once, any
    rectangular grid; class rows kept)."""
    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return table
    offsets = _offset_grid(table, src)
    resized = F.interpolate(
        offsets[None].float(), size=(2 * dst[0] - 1, 2 * dst[1] - 1), mode='bicubic', align_corners=False)
    return _with_class_rows(resized[0], table)


def fit_rel_pos_bias_table(table: torch.Tensor, src: Grid, dst: Grid) -> torch.Tensor:
    """An RPB table of a ``src`` patch grid made to serve a ``dst`` grid: cropped to the offsets ``dst`` has along
    a side where it is not longer (exact, as a smaller input uses them), then resized bicubically along longer
    sides (:func:`resize_rel_pos_bias_table`). The class-token rows are kept."""
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
    """(source, target) positions, symmetric around 0, of a learned table's ``2 src_side - 1`` offsets among a new
    one's ``2 dst_side - 1``, as BEiT and the official FD fine-tuning place them: a geometric progression whose
    ratio makes the largest offset reach (at most) ``dst_side - 1``, so that near offsets stay near."""
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
    """Resizes an RPB table between square patch grids as the official FD ``load_pretrained`` (and BEiT) do: each
    head's offset map is a bicubic interpolating spline over the positions of :func:`geometric_offsets`, read at
    the target's integer offsets (at its edge values outside the source's span); class rows kept.

    Their ``scipy.interpolate.interp2d(kind='cubic')`` (mmpretrain's and mmseg's BEiT use it too) is gone since
    SciPy 1.14; this uses ``RectBivariateSpline``, the same FITPACK spline, SciPy's named replacement.
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
    """Rows and columns of a (1, heads, T, T) bias, class token first, for the (B, K) ``token_ids`` each sample
    keeps among the T: (B, heads, K, K)."""
    batch, kept = token_ids.shape
    heads, total = bias.shape[1], bias.shape[-1]
    bias = bias.expand(batch, -1, -1, -1)
    rows = bias.gather(2, token_ids[:, None, :, None].expand(batch, heads, kept, total))
    return rows.gather(3, token_ids[:, None, None, :].expand(batch, heads, kept, kept))


class RelativePositionBias(nn.Module):
    """One RPB table (shared by all layers or owned by one attention) and the bias it gives any patch grid.

    The table and index of mmpretrain's ``RelativePositionBias``, whose ``forward`` serves only the grid it was
    built for and whose index is a persistent buffer (ours is computed, so checkpoints hold only the table).

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

    def forward(self, grid: Grid, token_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bias (1, heads, 1 + h*w, 1 + h*w) for a ``grid`` of patches (see :func:`fit_rel_pos_bias_table`), or
        (B, heads, K, K) for the (B, K) ``token_ids`` each sample keeps (:func:`select_token_bias`)."""
        grid = tuple(grid)
        table, index = self.relative_position_bias_table, self.relative_position_index
        if grid != self.grid:
            table = fit_rel_pos_bias_table(table, self.grid, grid)
            index = relative_position_index(grid, table.device)
        n = index.shape[0]
        bias = table[index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        return bias if token_ids is None else select_token_bias(bias, token_ids)

    def extra_repr(self) -> str:
        return f'grid={self.grid}, num_heads={self.num_heads}'
