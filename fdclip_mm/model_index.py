"""Our models in mmpretrain's ``ModelHub``: once ``fdclip_mm`` is imported, ``mmpretrain.list_models()`` lists the
names of our ``model-index.yml`` and ``get_model(name)`` / ``inference_model(name, ...)`` build them by name, as
they do mmpretrain's own. ``inference_model`` picks its inferencer from the entry's ``Results`` task, so it serves
the entries that report an ImageNet (or other classification) result; any config of ours works with the
inferencer classes directly (``ImageClassificationInferencer``, ``FeatureExtractor``, mmdet's ``DetInferencer``,
mmseg's ``MMSegInferencer``).
"""
import os.path as osp
from typing import List

from .config_inheritance import installed_config_dir

_registered: List[str] = []


def model_index_path() -> str:
    """The installed ``model-index.yml`` (beside ``configs/`` in the package's ``.mim`` folder)."""
    return osp.join(osp.dirname(installed_config_dir()), 'model-index.yml')


def register_model_index() -> List[str]:
    """Registers our model index with mmpretrain's ``ModelHub`` (once per process; config paths resolved in the
    installed package). Does nothing where the package has no ``.mim`` folder (a checkout that was not installed).

    Returns:
        list: The names registered (lower case, as ``ModelHub`` keys them).
    """
    from mmpretrain.apis import ModelHub
    path = model_index_path()
    if _registered or not osp.isfile(path):
        return list(_registered)
    before = set(ModelHub._models_dict)
    ModelHub.register_model_index(path, config_prefix=osp.dirname(path))
    _registered.extend(sorted(set(ModelHub._models_dict) - before))
    return list(_registered)
