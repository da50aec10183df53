"""Sets up Fashion-MNIST (60,000 train + 10,000 test 28x28 grey images, 10 classes, MIT) under ``data/``.

1. ``apt-get download dataset-fashion-mnist`` (Debian's package; runs ``apt-get update`` once if the package
   lists are empty) into the download cache (``$FDCLIP_CACHE``, default ``~/.cache/fdclip_mm/downloads``),
   checks the .deb's SHA-256, unpacks it there with ``dpkg-deb -x`` (nothing is installed) and checks the
   SHA-256 of the four ``*-ubyte.gz`` files.
2. Writes ``data/fashion_mnist/images/{train,test}/NNNNN.png`` (grey PNGs, named by index in the official
   files) and annotation files for mmpretrain's ``CustomDataset`` (``path label`` per line) in
   ``data/fashion_mnist/meta/``:

   - ``test.txt``: the official 10,000 test images (only ever used for the final numbers);
   - ``val.txt``: 5,000 train images (500 per class) held out for every choice made;
   - ``labelled_1k.txt``, ``labelled_5k.txt``: 100 / 500 per class from the other 55,000 (the 1k list is a
     subset of the 5k list);
   - ``unlabelled.txt``: those 55,000 images (labels written but never read by distillation).

   The split is drawn once with NumPy's generator seeded 0 and is the same on every machine.

The folder is written as ``fashion_mnist.part`` and renamed when complete; what exists is skipped::

    .venv/bin/python scripts/fetch_fashion_mnist.py
"""
import argparse
import glob
import gzip
import os
import os.path as osp
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np

from downloads import StepError, apt_download, download_dir, sha256  # beside this script

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

PACKAGE = 'dataset-fashion-mnist'
DEB_NAME = 'dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb'
DEB_SHA256 = '39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0'
IDX_DIR = 'usr/share/datasets/fashion-mnist'
IDX_SHA256 = {
    'train-images-idx3-ubyte.gz': 'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7',
    'train-labels-idx1-ubyte.gz': '0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056',
    't10k-images-idx3-ubyte.gz': 'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa',
    't10k-labels-idx1-ubyte.gz': '8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05',
}
CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
VAL_PER_CLASS = 500
LABELLED_PER_CLASS = {'labelled_1k': 100, 'labelled_5k': 500}
SPLIT_SEED = 0


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'data', 'fashion_mnist'), help='output folder')
    parser.add_argument(
        '--cache', default=None, help='download cache (default: $FDCLIP_CACHE or '
        '~/.cache/fdclip_mm/downloads)')
    return parser.parse_args(argv)


def fetch_deb(cache: str) -> str:
    """The package's .deb in ``cache``, downloaded with ``apt-get download`` unless already there."""
    return apt_download(PACKAGE, DEB_NAME, DEB_SHA256, cache)


def extract_idx(deb: str, cache: str) -> str:
    """The folder with the four checked ``*-ubyte.gz`` files, unpacked from ``deb`` with ``dpkg-deb -x``."""
    root = osp.join(cache, 'fashion-mnist-deb')
    folder = osp.join(root, IDX_DIR)
    if not all(osp.isfile(osp.join(folder, name)) for name in IDX_SHA256):
        part = root + '.part'
        shutil.rmtree(part, ignore_errors=True)
        result = subprocess.run(['dpkg-deb', '-x', deb, part], capture_output=True, text=True)
        if result.returncode != 0:
            raise StepError(f'dpkg-deb -x {deb} failed (exit {result.returncode}): {result.stderr[-2000:]}')
        shutil.rmtree(root, ignore_errors=True)
        os.replace(part, root)
    for name, expected in IDX_SHA256.items():
        digest = sha256(osp.join(folder, name))
        if digest != expected:
            raise StepError(f'{osp.join(folder, name)} has SHA-256 {digest}, expected {expected}')
    return folder


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzip) as a uint8 array: (N, 28, 28) images or (N,) labels."""
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], 'big')
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise StepError(f'{path}: not a uint8 IDX file (magic {magic:#x})')
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise StepError(f'{path}: {data.size} values, header says {shape}')
    return data.reshape(shape)


def split_train(labels: np.ndarray) -> Dict[str, np.ndarray]:
    """Index lists of the train images: ``val``, ``unlabelled`` and the labelled subsets (see module doc)."""
    rng = np.random.default_rng(SPLIT_SEED)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(len(CLASSES))]
    splits = {'val': np.sort(np.concatenate([ids[:VAL_PER_CLASS] for ids in per_class]))}
    rest = [ids[VAL_PER_CLASS:] for ids in per_class]
    splits['unlabelled'] = np.sort(np.concatenate(rest))
    for name, count in LABELLED_PER_CLASS.items():
        splits[name] = np.sort(np.concatenate([ids[:count] for ids in rest]))
    return splits


def write_dataset(idx_dir: str, dst: str) -> None:
    """Images and annotation files into ``dst`` (see module doc)."""
    from PIL import Image
    meta = osp.join(dst, 'meta')
    os.makedirs(meta)
    for split, prefix in (('train', 'train'), ('test', 't10k')):
        images = read_idx(osp.join(idx_dir, f'{prefix}-images-idx3-ubyte.gz'))
        labels = read_idx(osp.join(idx_dir, f'{prefix}-labels-idx1-ubyte.gz'))
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
            raise StepError(f'{prefix}: {images.shape} images for {labels.shape} labels')
        folder = osp.join(dst, 'images', split)
        os.makedirs(folder)
        for i, image in enumerate(images):
            Image.fromarray(image, mode='L').save(osp.join(folder, f'{i:05d}.png'))
        lists = split_train(labels) if split == 'train' else {'test': np.arange(len(labels))}
        for name, ids in lists.items():
            with open(osp.join(meta, f'{name}.txt'), 'w') as f:
                f.writelines(f'{split}/{i:05d}.png {labels[i]}\n' for i in ids)
        print(f'[done] {len(images)} {split} images')
    with open(osp.join(meta, 'classes.txt'), 'w') as f:
        f.writelines(f'{name}\n' for name in CLASSES)
    with open(osp.join(dst, 'README.txt'), 'w') as f:
        f.write('Fashion-MNIST (Zalando Research, MIT licence), from Debian\'s package dataset-fashion-mnist.\n'
                'Written by scripts/fetch_fashion_mnist.py of fdclip_mm; see its docstring for the splits.\n')


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = osp.abspath(args.out)
    if osp.isdir(out):
        counts = {osp.basename(p): sum(1 for _ in open(p)) for p in sorted(glob.glob(osp.join(out, 'meta', '*.txt')))}
        print(f'[skip] {out} already written: {counts}')
        return 0
    try:
        cache = download_dir(args.cache)
        idx_dir = extract_idx(fetch_deb(cache), cache)
        part = out + '.part'
        shutil.rmtree(part, ignore_errors=True)
        write_dataset(idx_dir, part)
        os.replace(part, out)
    except StepError as error:
        print(f'[error] {error}', file=sys.stderr)
        return 1
    print(f'[done] {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
