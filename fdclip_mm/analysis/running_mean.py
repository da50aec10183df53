"""Image-weighted running mean of per-batch averages (for analyses over many batches)."""
from typing import Optional

import torch


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
