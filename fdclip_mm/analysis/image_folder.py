"""Batches of normalised images from a folder, resized and centre-cropped for attention analysis."""
import os
import os.path as osp
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_images(folder: str, num_images: Optional[int] = None) -> List[str]:
    """Image files under ``folder`` (recursive, sorted); the first ``num_images`` when given.

    Raises:
        FileNotFoundError: if the folder holds no image.
    """
    paths = sorted(
        osp.join(root, name) for root, _, names in os.walk(folder) for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {folder}')
    return paths[:num_images] if num_images else paths


def load_image(path: str, img_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """One RGB image: shorter side resized to ``img_size`` (bicubic), centre crop, normalised (3, H, W).

    ``mean`` / ``std`` are on the 0-255 scale.
    """
    img = Image.open(path).convert('RGB')
    scale = img_size / min(img.size)
    width, height = max(img_size, round(img.width * scale)), max(img_size, round(img.height * scale))
    img = img.resize((width, height), Image.BICUBIC)
    left, top = (width - img_size) // 2, (height - img_size) // 2
    img = img.crop((left, top, left + img_size, top + img_size))
    array = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    return (array - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def iter_image_batches(paths: Sequence[str],
                       img_size: int,
                       mean: Sequence[float],
                       std: Sequence[float],
                       batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Batches (B, 3, img_size, img_size) of :func:`load_image` over ``paths``."""
    for start in range(0, len(paths), batch_size):
        yield torch.stack([load_image(p, img_size, mean, std) for p in paths[start:start + batch_size]])
