"""fdclip_mm: Feature Distillation (Improving CLIP Fine-tuning Performance) for OpenMMLab 2.0.

Importing the package registers every module in the ``fdclip_mm`` scope, which is what
``custom_imports=dict(imports=['fdclip_mm'])`` in an mmpretrain / mmdet / mmseg config relies on.
"""
from .version import __version__
from . import datasets, engine, evaluation, models  # noqa: F401,E402  (registration side effects)

__all__ = ['__version__']
