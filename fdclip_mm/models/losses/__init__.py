from .feature_distill_loss import FeatureDistillLoss

__all__ = ['FeatureDistillLoss']
