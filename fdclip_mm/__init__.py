"""fdclip_mm: Feature Distillation (Improving CLIP Fine-tuning Performance) for OpenMMLab 2.0.

Importing the package registers every module in the ``fdclip_mm`` scope, which is what
``custom_imports=dict(imports=['fdclip_mm'])`` in an mmpretrain / mmdet / mmseg config relies on, lets configs
inherit ours (:func:`base_config`) and adds our model index to mmpretrain's ``ModelHub``.
"""
from mmengine.config.utils import MODULE2PACKAGE

from .checkpoint import register_checkpoint_globals
from .config_inheritance import base_config
from .registry import SCOPE
from .version import __version__

# Lets configs inherit ours as ``_base_ = 'fdclip_mm::fd/...'`` (resolved to the package's ``.mim/configs``).
MODULE2PACKAGE.setdefault(SCOPE, SCOPE)
# Importing fdclip_mm (e.g. through a config's ``custom_imports``) is what lets Runner checkpoints resume under
# ``torch.load(weights_only=True)`` in any project's runner.
register_checkpoint_globals()
from . import datasets, engine, evaluation, models  # noqa: F401,E402  (registration side effects)
from .model_index import register_model_index  # noqa: E402

# ``mmpretrain.list_models()`` / ``get_model(name)`` know our models from here on.
register_model_index()

__all__ = ['__version__', 'base_config']
