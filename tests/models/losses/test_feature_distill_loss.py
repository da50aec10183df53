import pytest
import torch
import torch.nn.functional as F

from fdclip_mm.models.losses import FeatureDistillLoss


def test_smooth_l1_beta_two_by_value():
    pred = torch.tensor([[[0.0, 1.0, 3.0]]])
    target = torch.zeros_like(pred)
    # |d| < 2: 0.5 d^2 / 2; |d| >= 2: |d| - 1
    assert FeatureDistillLoss()(pred, target).item() == pytest.approx((0 + 0.25 + 2.0) / 3)


def test_l2_and_cosine_and_per_sample():
    pred, target = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    assert FeatureDistillLoss('l2')(pred, target).item() == pytest.approx(F.mse_loss(pred, target).item())
    cos = 1 - F.cosine_similarity(pred, target, dim=-1)
    assert FeatureDistillLoss('cosine')(pred, target).item() == pytest.approx(cos.mean().item(), rel=1e-6)
    per_sample = FeatureDistillLoss()(pred, target, per_sample=True)
    assert per_sample.shape == (3, )
    assert per_sample.mean().item() == pytest.approx(FeatureDistillLoss()(pred, target).item())


def test_errors():
    with pytest.raises(TypeError, match='loss_weight'):  # the distiller weights each teacher's loss, in one place
        FeatureDistillLoss(loss_weight=2.0)
    with pytest.raises(ValueError, match='loss_type'):
        FeatureDistillLoss('kl')
    with pytest.raises(ValueError, match='shape'):
        FeatureDistillLoss()(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
