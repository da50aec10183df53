"""Token-wise feature regression losses of the distiller."""
import torch
import torch.nn.functional as F
from torch import nn

from fdclip_mm.registry import MODELS

LOSS_TYPES = ('smooth_l1', 'l2', 'cosine')


@MODELS.register_module()
class FeatureDistillLoss(nn.Module):
    """Regression of projected student tokens onto (whitened) teacher tokens.

    Unweighted: the distiller weights each teacher's loss (its ``loss_weight``), in one place.

    Args:
        loss_type: ``'smooth_l1'`` (the paper, with ``beta``), ``'l2'`` or ``'cosine'`` (1 - cosine
            similarity of each token pair).
        beta: Smooth-L1 threshold; the paper uses 2.0.
    """

    def __init__(self, loss_type: str = 'smooth_l1', beta: float = 2.0) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f'loss_type must be one of {LOSS_TYPES}, got {loss_type!r}')
        self.loss_type = loss_type
        self.beta = beta

    def forward(self, pred: torch.Tensor, target: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """Mean over tokens and channels (B x N x C inputs); ``per_sample`` keeps the batch dimension."""
        if pred.shape != target.shape:
            raise ValueError(f'prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape')
        pred, target = pred.float(), target.float()
        if self.loss_type == 'smooth_l1':
            loss = F.smooth_l1_loss(pred, target, beta=self.beta, reduction='none')
        elif self.loss_type == 'l2':
            loss = F.mse_loss(pred, target, reduction='none')
        else:
            loss = 1 - F.cosine_similarity(pred, target, dim=-1)
        return loss.flatten(1).mean(1) if per_sample else loss.mean()
