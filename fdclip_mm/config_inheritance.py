"""Inheriting fdclip_mm's configs from any OpenMMLab project's own tools.

mmengine resolves ``_base_ = 'fdclip_mm::...'`` through its ``MODULE2PACKAGE`` table while it parses the
file, before the config's ``custom_imports`` run, so an unmodified ``tools/train.py`` of mmdet, mmseg or
mmpretrain (and ``mim train mmdet ...``) cannot find our configs by scope alone. mmengine evaluates the
``_base_`` expression, so a config can import us there::

    _base_ = __import__('fdclip_mm').base_config('mask_rcnn_coco/mask-rcnn_fd-clip-vit-b16_fpn_ms-crop-1x_coco.py')

Importing ``fdclip_mm`` registers our modules, and :func:`base_config` returns the path of that config in the
installed package (checked to exist). A path rather than ``'fdclip_mm::...'``: mmengine looks a scope's configs up
in the distribution's folder, which for an editable install is site-packages, not the checkout; the path is
right for both. Once ``fdclip_mm`` is imported (our own tools do that first), ``_base_ = 'fdclip_mm::...'`` works
too, for regular installs.
"""
import os.path as osp
from typing import List, Union


def installed_config_dir() -> str:
    """The ``configs`` folder of the installed package (``.mim/configs``: copied by a wheel install, linked to
    the checkout by an editable one)."""
    return osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def base_config(*names: str) -> Union[str, List[str]]:
    """The installed file of one config of ours (a list for several), for a ``_base_`` line.

    Args:
        *names: Config paths relative to ``configs/``, e.g. ``'upernet_ade20k/upernet_fd-clip-vit-b16_...py'``.

    Returns:
        str or list: Absolute path(s), in the order given.

    Raises:
        FileNotFoundError: A config is not in the installed package (the message names the folder searched).
    """
    if not names:
        raise ValueError("base_config() needs a config path, e.g. base_config('fd/fd_clip-vit-b16_...py')")
    root = installed_config_dir()
    paths = [osp.join(root, name) for name in names]
    for name, path in zip(names, paths):
        if not osp.isfile(path):
            raise FileNotFoundError(f'fdclip_mm has no config {name!r} (looked in {root}); the names are paths '
                                    "under the repository's configs/ folder, e.g. 'fd/...' or 'mask_rcnn_coco/...'")
    return paths[0] if len(paths) == 1 else paths
