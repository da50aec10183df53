"""Average attention distance (in pixels) per head and layer, as in ViT's and the FD supplement's Fig. 1."""
from typing import Sequence, Tuple

import torch


def patch_distances(grid: Tuple[int, int], patch_size: int) -> torch.Tensor:
    """Euclidean distances in pixels between the centres of all pairs of patches.

    Args:
        grid: Patch grid (h, w); patches are indexed row-major, top-left to bottom-right.
        patch_size: Patch side in pixels.

    Returns:
        A (h*w, h*w) float32 tensor.
    """
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing='ij')
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).float() * patch_size
    return torch.cdist(centres, centres)


def attention_distance(attn: torch.Tensor,
                       grid: Tuple[int, int],
                       patch_size: int,
                       num_extra_tokens: int = 1,
                       renormalize: bool = True) -> torch.Tensor:
    """Mean attention-weighted query-key distance of every image and head (class token excluded).

    For each patch query, the distances to all patch keys are weighted by the attention probabilities and
    summed; the result is averaged over the queries. Rows and columns of extra tokens (CLS) are dropped.

    Args:
        attn: Attention probabilities (B, heads, T, T) with ``T = num_extra_tokens + h*w``,
            extra tokens first.
        grid: Patch grid (h, w).
        patch_size: Patch side in pixels.
        num_extra_tokens: Leading non-patch tokens (1 for a class token).
        renormalize: Rescale each query's patch-key probabilities to sum to one, so the distance is a
            weighted mean over patches even when a head puts mass on the class token. Without it the
            probability mass on the class token counts as distance 0.

    Returns:
        A (B, heads) float32 tensor of distances in pixels.

    Raises:
        ValueError: if ``attn`` does not match the grid.
    """
    num_patches = grid[0] * grid[1]
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2] or attn.shape[-1] != num_patches + num_extra_tokens:
        raise ValueError(f'attention of shape {tuple(attn.shape)} does not match a {grid} patch grid with '
                         f'{num_extra_tokens} extra token(s)')
    patch_attn = attn[..., num_extra_tokens:, num_extra_tokens:].float()
    if renormalize:
        patch_attn = patch_attn / patch_attn.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    dist = patch_distances(grid, patch_size).to(patch_attn.device)
    return (patch_attn * dist).sum(dim=-1).mean(dim=-1)


def layer_attention_distances(attn_maps: Sequence[torch.Tensor],
                              grid: Tuple[int, int],
                              patch_size: int,
                              num_extra_tokens: int = 1,
                              renormalize: bool = True) -> torch.Tensor:
    """:func:`attention_distance` of every layer, averaged over the images of the batch.

    Args:
        attn_maps: One (B, heads, T, T) tensor per layer (e.g. ``FDViT.forward_attention``'s output).
        grid: Patch grid (h, w).
        patch_size: Patch side in pixels.
        num_extra_tokens: Leading non-patch tokens.
        renormalize: See :func:`attention_distance`.

    Returns:
        A (layers, heads) float32 tensor in pixels.
    """
    return torch.stack(
        [attention_distance(attn, grid, patch_size, num_extra_tokens, renormalize).mean(dim=0) for attn in attn_maps])
