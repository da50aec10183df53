"""Stochastic depth whose rate is data, so that one compiled graph serves blocks of different rates."""
import torch
from mmcv.cnn.bricks.drop import DropPath as MMCVDropPath


class DropPath(MMCVDropPath):
    """mmcv's ``DropPath`` (the same random draw and arithmetic in eager mode), compiled without a graph per rate.

    mmcv's ``if drop_prob == 0.`` branches on a Python float that ``torch.compile`` treats as a graph input, so
    each block's call breaks the graph there; compiled, this one reads the keep probability from a
    (non-persistent) buffer instead, and blocks with different rates share one graph.

    Args:
        drop_prob: Probability of dropping the branch (0 <= p < 1).
    """

    def __init__(self, drop_prob: float) -> None:
        if not 0 <= drop_prob < 1:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob}')
        super().__init__(float(drop_prob))
        self.register_buffer('keep_prob', torch.tensor(1 - self.drop_prob), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = self.keep_prob.to(x.dtype) if torch.compiler.is_compiling() else 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        return x.div(keep) * (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor()

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
