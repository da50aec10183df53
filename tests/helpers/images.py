"""Tiny image folders of random JPEGs."""
import os.path as osp

import numpy as np


def write_image_folder(root: str, count: int, size=(40, 48), seed: int = 0) -> str:
    """``count`` random RGB JPEGs under ``root`` (no labels); returns ``root``."""
    import mmcv
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mmcv.imwrite(img, osp.join(root, f'img_{i:03d}.jpg'))
    return root
