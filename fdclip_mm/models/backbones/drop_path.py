"""Stochastic depth whose rate is data, so that one compiled graph serves blocks of different rates."""
import torch
from torch import nn


class DropPath(nn.Module):
    """Drops the residual branch per sample with probability ``drop_prob`` during training.

    In eager mode this computes exactly what mmcv's ``DropPath`` computes (the same random draw and
    arithmetic). mmcv's ``if drop_prob == 0.`` branches on a Python float that ``torch.compile`` treats as a
    graph input, so each block's call breaks the graph there; here the compiled path reads the keep
    probability from a (non-persistent) buffer instead, and blocks with different rates share one graph.

    Args:
        drop_prob: Probability of dropping the branch (0 <= p < 1).
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        if not 0 <= drop_prob < 1:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob}')
        self.drop_prob = float(drop_prob)
        self.register_buffer('keep_prob', torch.tensor(1 - self.drop_prob), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = self.keep_prob.to(x.dtype) if torch.compiler.is_compiling() else 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        return x.div(keep) * (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor()

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
