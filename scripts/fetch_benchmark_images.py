"""Sets up the real JPEGs that ``benchmarks/data_pipeline.py`` times, under ``data/benchmark_images/`` (ignored).

1. ``imagenet_sized/``: the demo's photos (``data/demo/images/*/*.png``, written by
   ``scripts/fetch_demo_data.py`` from scikit-image's bundled CC0 / public-domain photos) re-encoded as
   500x375 JPEGs, quality 90, about the size of an average ImageNet training image.
2. ``large/``: 15 photos of 1365-5312 px from Debian's ``lomiri-wallpapers-16.04`` (``apt-get download`` into
   the download cache, ``$FDCLIP_CACHE`` or ``~/.cache/fdclip_mm/downloads``; SHA-256 checked; unpacked with
   ``dpkg-deb -x``, nothing installed; CC-BY-4.0 / CC-BY-SA-4.0 / CC0, see ``large/copyright``), re-encoded as
   baseline JPEGs of 1600 px on the longer side, quality 90 (camera-photo sizes, as COCO's originals).

Each folder is written as ``<name>.part`` and renamed when complete; what exists is skipped::

    .venv/bin/python scripts/fetch_demo_data.py && .venv/bin/python scripts/fetch_benchmark_images.py
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
from typing import List, Optional

from PIL import Image

from downloads import StepError, apt_download, download_dir  # beside this script

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

PACKAGE = 'lomiri-wallpapers-16.04'
DEB_NAME = 'lomiri-wallpapers-16.04_20.04.0-2_all.deb'
DEB_SHA256 = 'a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab'
WALLPAPERS = 'usr/share/backgrounds'
COPYRIGHT = f'usr/share/doc/{PACKAGE}/copyright'
IMAGENET_SIZE = (500, 375)
LARGE_SIDE = 1600
QUALITY = 90


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'data', 'benchmark_images'), help='output folder')
    parser.add_argument('--demo', default=osp.join(REPO_ROOT, 'data', 'demo', 'images'), help='the demo photos')
    parser.add_argument(
        '--cache', default=None, help='download cache (default: $FDCLIP_CACHE or '
        '~/.cache/fdclip_mm/downloads)')
    return parser.parse_args(argv)


def write_jpegs(sources: List[str], folder: str, size_of) -> None:
    """Each source image, RGB, resized to ``size_of(width, height)`` (bicubic), as ``<stem>.jpg`` in ``folder``."""
    part = folder + '.part'
    shutil.rmtree(part, ignore_errors=True)
    os.makedirs(part)
    for source in sources:
        with Image.open(source) as image:
            image = image.convert('RGB')
            image.resize(size_of(*image.size), Image.BICUBIC).save(
                osp.join(part,
                         osp.splitext(osp.basename(source))[0] + '.jpg'), quality=QUALITY)
    os.replace(part, folder)
    print(f'[done] {len(sources)} JPEGs in {folder}')


def imagenet_sized(demo: str, folder: str) -> None:
    photos = sorted(glob.glob(osp.join(demo, '*', '*.png')))
    if not photos:
        raise StepError(f'no demo photos in {demo}: run scripts/fetch_demo_data.py first')
    write_jpegs(photos, folder, lambda width, height: IMAGENET_SIZE)


def large(cache: str, folder: str) -> None:
    deb = apt_download(PACKAGE, DEB_NAME, DEB_SHA256, cache)
    unpacked = osp.join(cache, 'lomiri-wallpapers-16.04-deb')
    if not osp.isdir(unpacked):
        result = subprocess.run(['dpkg-deb', '-x', deb, unpacked + '.part'], capture_output=True, text=True)
        if result.returncode != 0:
            raise StepError(f'dpkg-deb -x {deb} failed (exit {result.returncode}): {result.stderr[-2000:]}')
        os.replace(unpacked + '.part', unpacked)
    photos = sorted(glob.glob(osp.join(unpacked, WALLPAPERS, '*.jpg')))
    if len(photos) != 15:
        raise StepError(f'{deb} holds {len(photos)} photos under {WALLPAPERS}, expected 15')

    def size_of(width: int, height: int):
        ratio = LARGE_SIDE / max(width, height)
        return round(width * ratio), round(height * ratio)

    write_jpegs(photos, folder, size_of)
    shutil.copy(osp.join(unpacked, COPYRIGHT), osp.join(folder, 'copyright'))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        for name, make in (('imagenet_sized', lambda folder: imagenet_sized(args.demo, folder)),
                           ('large', lambda folder: large(download_dir(args.cache), folder))):
            folder = osp.join(args.out, name)
            if osp.isdir(folder):
                print(f'[skip] {folder} exists')
            else:
                make(folder)
    except StepError as err:
        print(f'[fail] {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
