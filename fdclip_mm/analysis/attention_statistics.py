"""One pass over images computing both attention statistics of a model (distances and average maps)."""
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Tuple

import torch
from torch import nn

from .attention_distance import layer_attention_distances
from .attention_maps import layer_attention_maps
from .attention_model import collect_attention, patch_size_of


class RunningMean:
    """Accumulates batch means weighted by their number of images.

    Example:
        >>> mean = RunningMean()
        >>> mean.update(torch.tensor([1.0]), count=1)
        >>> mean.update(torch.tensor([4.0]), count=3)
        >>> mean.value
        tensor([3.2500])
    """

    def __init__(self) -> None:
        self.total: Optional[torch.Tensor] = None
        self.count = 0

    def update(self, batch_mean: torch.Tensor, count: int) -> None:
        """Adds the mean ``batch_mean`` of ``count`` images."""
        weighted = batch_mean.detach().double().cpu() * count
        self.total = weighted if self.total is None else self.total + weighted
        self.count += count

    @property
    def value(self) -> torch.Tensor:
        """The mean over every image seen (float32)."""
        if self.total is None or self.count == 0:
            raise ValueError('RunningMean has no values yet')
        return (self.total / self.count).float()


@dataclass
class AttentionStats:
    """Attention statistics of one model over a set of images.

    Attributes:
        distances: (layers, heads) mean attention distance in pixels.
        maps: (layers, N, N) average patch-to-patch attention (over heads and images).
        grid: Patch grid (h, w).
        patch_size: Patch side in pixels.
        num_images: Images averaged over.
    """
    distances: torch.Tensor
    maps: torch.Tensor
    grid: Tuple[int, int]
    patch_size: int
    num_images: int


def analyse_attention(module: nn.Module,
                      batches: Iterable[torch.Tensor],
                      num_extra_tokens: int = 1,
                      renormalize: bool = True,
                      on_batch: Optional[Callable[[int], None]] = None) -> AttentionStats:
    """Mean attention distance per head and layer and average attention maps of ``module`` over ``batches``.

    Args:
        module: Has ``forward_attention(x)`` and ``patch_size`` (FDViT, a ViT BackboneTeacher).
        batches: Normalised image batches (B, 3, H, W) in the statistics ``module`` expects.
        num_extra_tokens: Leading non-patch tokens (the class token).
        renormalize: See :func:`attention_distance`.
        on_batch: Called with the batch size after each batch (e.g. a progress bar's update).
    """
    patch = patch_size_of(module)
    distances, maps = RunningMean(), RunningMean()
    grid = None
    for images in batches:
        grid = (images.shape[-2] // patch, images.shape[-1] // patch)
        attn = collect_attention(module, images)
        distances.update(layer_attention_distances(attn, grid, patch, num_extra_tokens, renormalize), len(images))
        maps.update(layer_attention_maps(attn, num_extra_tokens), len(images))
        if on_batch is not None:
            on_batch(len(images))
    if grid is None:
        raise ValueError('no images to analyse')
    return AttentionStats(distances.value, maps.value, grid, patch, distances.count)
