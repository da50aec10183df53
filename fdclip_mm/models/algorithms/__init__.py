from .data_preprocessor import DistillDataPreprocessor
from .feature_distiller import FeatureDistiller

__all__ = ['DistillDataPreprocessor', 'FeatureDistiller']
