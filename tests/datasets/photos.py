"""Real photos for the decoding tests: scikit-image's bundled sample photos (public domain / CC0), written as
JPEG files the way the benchmarks prepare them."""
import io
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np
import skimage.data
from PIL import Image

#: ImageNet-like photos (re-encoded at 500x375) and photos of 1000 px and more (kept at their size).
SMALL_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
LARGE_PHOTOS = ('retina', 'hubble_deep_field')


def jpeg_bytes(rgb: np.ndarray, quality: int = 90, **save_args) -> bytes:
    """``rgb`` (H, W, 3) or grey (H, W) uint8 as JPEG bytes (Pillow's encoder)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, 'JPEG', quality=quality, **save_args)
    return buffer.getvalue()


def write_photos(folder, size: Optional[Tuple[int, int]] = (500, 375), names=SMALL_PHOTOS) -> Dict[str, str]:
    """Photos ``names`` as ``<folder>/<name>.jpg`` (quality 90), resized to ``size`` (w, h) unless None."""
    paths = {}
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)()).convert('RGB')
        if size is not None:
            image = image.resize(size, Image.BICUBIC)
        paths[name] = osp.join(str(folder), f'{name}.jpg')
        with open(paths[name], 'wb') as f:
            f.write(jpeg_bytes(np.asarray(image)))
    return paths
