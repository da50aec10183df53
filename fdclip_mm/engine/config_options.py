"""``--cfg-options`` for our tools, with a top-level ``data_root`` that the datasets follow.

OpenMMLab configs write ``data_root = 'data/x'`` and then ``dataset=dict(data_root=data_root, ...)``; the
value is copied when the file is parsed, so ``--cfg-options data_root=...`` alone changes nothing and the run
silently reads the default data. Here a ``data_root`` option replaces the config's data root everywhere
the data is named: in every ``*_dataloader`` and ``*_evaluator`` section, each string that is the old root
or a path under it (``data_root`` itself, ``ann_file=data_root + 'annotations/...'`` of COCO metrics) moves
under the new one. Other options are merged afterwards, so an explicit
``train_dataloader.dataset.data_root=...`` still wins.
"""
from typing import Any, Dict, Optional

from mmengine.config import Config

DATA_SECTION_SUFFIXES = ('_dataloader', '_evaluator')


def merge_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> Config:
    """Merge ``--cfg-options`` into ``cfg``, moving the data to a given ``data_root`` first.

    Args:
        cfg: The config (modified in place).
        options: The parsed ``--cfg-options`` (``DictAction``), or None.

    Returns:
        Config: ``cfg``.

    Raises:
        KeyError: ``data_root`` is given but the config has no top-level ``data_root`` to replace.
    """
    options = dict(options or {})
    if 'data_root' in options:
        move_data_root(cfg, str(options.pop('data_root')))
    if options:
        cfg.merge_from_dict(options)
    return cfg


def move_data_root(cfg: Config, new_root: str) -> int:
    """Replace the config's top-level ``data_root`` by ``new_root`` wherever the data sections use it.

    Args:
        cfg: The config (modified in place).
        new_root: The new data root.

    Returns:
        int: How many values were moved.

    Raises:
        KeyError: The config has no top-level ``data_root``.
    """
    old_root = cfg.get('data_root')
    if not isinstance(old_root, str) or not old_root:
        raise KeyError('--cfg-options data_root=...: this config has no top-level data_root to replace; set '
                       'the dataset key instead (e.g. train_dataloader.dataset.data_root=...)')
    cfg.data_root = new_root
    moved = 0
    for name in list(cfg.keys()):
        if name.endswith(DATA_SECTION_SUFFIXES) and cfg[name] is not None:
            cfg[name], count = _moved(cfg[name], old_root.rstrip('/'), new_root.rstrip('/'))
            moved += count
    return moved


def _moved(value: Any, old: str, new: str):
    """``value`` with every string under ``old`` moved under ``new``, and how many were moved."""
    if isinstance(value, str):
        if value.rstrip('/') == old or value.startswith(old + '/'):
            return new + value[len(old):], 1
        return value, 0
    if isinstance(value, dict):
        count = 0
        for key in list(value.keys()):
            value[key], moved = _moved(value[key], old, new)
            count += moved
        return value, count
    if isinstance(value, (list, tuple)):
        items = [_moved(v, old, new) for v in value]
        return type(value)(v for v, _ in items), sum(c for _, c in items)
    return value, 0
