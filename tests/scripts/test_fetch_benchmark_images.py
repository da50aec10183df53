"""scripts/fetch_benchmark_images.py: the ImageNet-sized JPEGs from the demo photos, and a checked download."""

import numpy as np
import pytest
from PIL import Image

from ..helpers.scripts import load_script

fetch = load_script('scripts/fetch_benchmark_images.py')


def test_demo_photos_become_imagenet_sized_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    for split, name, size in (('train', 'a', (300, 200)), ('val', 'b', (64, 640))):
        (tmp_path / 'demo' / split).mkdir(parents=True)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / 'demo' / split / f'{name}.png')
    fetch.imagenet_sized(str(tmp_path / 'demo'), str(tmp_path / 'imagenet_sized'))
    for name in ('a', 'b'):
        with Image.open(tmp_path / 'imagenet_sized' / f'{name}.jpg') as image:
            assert (image.format, image.size, image.mode) == ('JPEG', (500, 375), 'RGB')


def test_no_demo_photos_is_a_step_error(tmp_path):
    with pytest.raises(fetch.StepError, match='run scripts/fetch_demo_data.py first'):
        fetch.imagenet_sized(str(tmp_path), str(tmp_path / 'out'))


def test_a_tampered_deb_is_refused(tmp_path):
    (tmp_path / fetch.DEB_NAME).write_bytes(b'not the package')
    with pytest.raises(fetch.StepError, match='SHA-256'):
        fetch.large(str(tmp_path), str(tmp_path / 'large'))
