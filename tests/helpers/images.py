"""Tiny image folders of random JPEGs, good and bad image files, and how close two images are (PSNR)."""
import os.path as osp

import mmcv
import numpy as np
import torch


def write_image_folder(root: str, count: int, size=(40, 48), seed: int = 0) -> str:
    """``count`` random RGB JPEGs under ``root`` (no labels); returns ``root``."""
    import mmcv
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mmcv.imwrite(img, osp.join(root, f'img_{i:03d}.jpg'))
    return root


#: PSNR floors against today's pipeline (checked loader, RandomResizedCrop(backend='pillow'), same crop).
#: Full DCT scale: the decoders give today's pixels bit for bit; torch's uint8 resampling rounds a few pixels
#: differently from Pillow's (lowest measured on real photos: 54 dB). Reduced scale: the DCT-domain reduction is
#: another low-pass filter than Pillow's antialiasing (lowest measured: 34 dB on 117 crops of 1600-px photos).
FULL_SCALE_PSNR = 50.

REDUCED_SCALE_PSNR = 30.


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (``inf`` where equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
    return float('inf') if mse == 0 else 10 * np.log10(255**2 / mse)


def write_files(folder) -> dict:
    """A good JPEG, one with a trailer after its end marker, a PNG, and four bad files; name -> path."""
    img = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    paths = {
        name: str(folder / name)
        for name in ('good.jpg', 'trailer.jpg', 'good.png', 'truncated.jpg', 'garbage.jpg', 'empty.jpg')
    }
    mmcv.imwrite(img, paths['good.jpg'])
    mmcv.imwrite(img, paths['good.png'])
    data = open(paths['good.jpg'], 'rb').read()
    open(paths['trailer.jpg'], 'wb').write(data + b'camera trailer\x00\x01')
    open(paths['truncated.jpg'], 'wb').write(data[:len(data) * 2 // 3])
    open(paths['garbage.jpg'], 'wb').write(b'this is not an image')
    open(paths['empty.jpg'], 'wb').write(b'')
    paths['missing.jpg'] = str(folder / 'missing.jpg')
    return paths


def uint8_images(n: int, height: int, width: int):
    """``n`` random 3 x ``height`` x ``width`` uint8 tensors (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8) for _ in range(n)]
