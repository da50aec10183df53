"""Writes scikit-learn's digits (1,797 real 8x8 handwritten digits, 10 classes) as an image folder.

The CSV ships inside scikit-learn's wheel; the wheel is fetched with ``pip download --no-deps`` into the download
cache (``$FDCLIP_CACHE``, default ``~/.cache/fdclip_mm/downloads``) and read as a zip: scikit-learn is not
installed. Images go to ``data/digits/{train,val}/<digit>/NNNN.png`` (git-ignored) as 8x8 RGB PNGs, grey
levels 0..16 scaled to 0..255; the fine-tuning pipeline upsamples them. Every 5th image (by index) is a
validation image: 1,437 train / 360 val, all classes in both.

    .venv/bin/python scripts/fetch_digits.py
"""
import argparse
import gzip
import io
import os
import os.path as osp
import subprocess
import sys
import zipfile
from typing import List, Optional, Tuple

import numpy as np

from downloads import download_dir  # beside this script

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WHEEL_SPEC = 'scikit-learn==1.9.1'
WHEEL_PREFIX = 'scikit_learn-1.9.1-'
CSV_MEMBER = 'sklearn/datasets/data/digits.csv.gz'
VAL_EVERY = 5


def find_wheel(cache: str) -> Optional[str]:
    """A scikit-learn 1.9.1 wheel already in ``cache``, if any."""
    if not osp.isdir(cache):
        return None
    names = sorted(n for n in os.listdir(cache) if n.startswith(WHEEL_PREFIX) and n.endswith('.whl'))
    return osp.join(cache, names[0]) if names else None


def fetch_wheel(cache: str) -> str:
    """The scikit-learn wheel in ``cache``, downloaded with pip (no dependencies, not installed) if missing."""
    wheel = find_wheel(cache)
    if wheel:
        print(f'[skip] {wheel} already downloaded')
        return wheel
    os.makedirs(cache, exist_ok=True)
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', WHEEL_SPEC, '-d', cache]
    print(f'[run]  {" ".join(cmd)}')
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = find_wheel(cache)
    if result.returncode != 0 or wheel is None:
        raise RuntimeError(f'pip download {WHEEL_SPEC} failed (exit {result.returncode}):\n{result.stderr[-2000:]}')
    return wheel


def read_digits(wheel: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 8, 8) in 0..16, labels int64 (N,))`` from the CSV inside ``wheel``."""
    with zipfile.ZipFile(wheel) as archive:
        raw = gzip.decompress(archive.read(CSV_MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=',', dtype=np.int64)
    return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64]


def write_split(images: np.ndarray, labels: np.ndarray, root: str, indices: List[int]) -> int:
    """Writes ``images[indices]`` as ``root/<label>/<index>.png``; returns the count."""
    import mmcv
    for i in indices:
        grey = np.round(images[i].astype(np.float32) * (255. / 16.)).astype(np.uint8)
        mmcv.imwrite(np.repeat(grey[..., None], 3, axis=2), osp.join(root, str(int(labels[i])), f'{i:04d}.png'))
    return len(indices)


def write_digits(wheel: str, out: str, limit: Optional[int] = None) -> Tuple[int, int]:
    """Writes the image folder (the first ``limit`` images only, if given); returns (train, val) counts."""
    images, labels = read_digits(wheel)
    count = len(labels) if limit is None else min(limit, len(labels))
    val = [i for i in range(count) if i % VAL_EVERY == 0]
    train = [i for i in range(count) if i % VAL_EVERY != 0]
    return write_split(images, labels, osp.join(out, 'train'), train), write_split(images, labels, osp.join(out, 'val'),
                                                                                   val)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'data', 'digits'), help='image folder to write')
    parser.add_argument('--cache', default=None, help='download cache')
    args = parser.parse_args(argv)
    if osp.isdir(osp.join(args.out, 'val')) and osp.isdir(osp.join(args.out, 'train')):
        print(f'[skip] {args.out} already written')
        return
    n_train, n_val = write_digits(fetch_wheel(download_dir(args.cache)), args.out)
    with open(osp.join(args.out, 'README.txt'), 'w') as f:
        f.write('Optical Recognition of Handwritten Digits (UCI; E. Alpaydin, C. Kaynak, 1998), CC BY 4.0, as\n'
                f'shipped in {WHEEL_SPEC} (BSD-3-Clause) as {CSV_MEMBER}. Written by scripts/fetch_digits.py.\n')
    print(f'[done] {n_train} train / {n_val} val images in {args.out}')


if __name__ == '__main__':
    main()
