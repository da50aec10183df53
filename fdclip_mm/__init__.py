"""fdclip_mm: Feature Distillation (Improving CLIP Fine-tuning Performance) for OpenMMLab 2.0.

Importing the package registers every module in the ``fdclip_mm`` scope, which is what
``custom_imports=dict(imports=['fdclip_mm'])`` in an mmpretrain / mmdet / mmseg config relies on.
"""
from mmengine.config.utils import MODULE2PACKAGE

from .version import __version__

# Lets configs inherit ours as ``_base_ = 'fdclip_mm::fd/...'`` (resolved to the package's ``.mim/configs``).
MODULE2PACKAGE.setdefault('fdclip_mm', 'fdclip_mm')
from . import datasets, engine, evaluation, models  # noqa: F401,E402  (registration side effects)

__all__ = ['__version__']
