"""DecodeRandomResizedCrop: the crops and flips of mmpretrain's RandomResizedCrop + RandomFlip (the same draws
for the same seed), images close to theirs (PSNR floors stated below), their exact output for the files the fast
path does not cover, and the checked loader's errors naming the file."""
import io

import mmcv
import numpy as np
import pytest
import skimage.data
import torch
from mmcv.transforms import RandomFlip
from mmpretrain.datasets.transforms import RandomResizedCrop
from PIL import Image

from fdclip_mm.datasets import CheckedLoadImageFromFile, DecodeRandomResizedCrop, UnreadableImageError
from fdclip_mm.datasets import decode_random_resized_crop as module
from fdclip_mm.datasets import jpeg_decode
from fdclip_mm.datasets.device_decode import CROP_FIELDS, is_encoded_crop, split_encoded_crop
from fdclip_mm.datasets.jpeg_decode import dct_scale
from ..helpers.images import FULL_SCALE_PSNR, REDUCED_SCALE_PSNR, psnr, write_files
from .photos import LARGE_PHOTOS, jpeg_bytes, write_photos


def todays_crop(path: str, seed: int, interpolation: str = 'bilinear', flip: bool = False) -> dict:
    np.random.seed(seed)
    results = CheckedLoadImageFromFile()(dict(img_path=path))
    results = RandomResizedCrop(224, backend='pillow', interpolation=interpolation)(results)
    return RandomFlip(0.5, 'horizontal')(results) if flip else results


def fast_crop(path: str, seed: int, **kwargs) -> dict:
    np.random.seed(seed)
    return DecodeRandomResizedCrop(224, **kwargs)(dict(img_path=path))


@pytest.mark.parametrize('decoder', ['simplejpeg', 'pillow'])
@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic'])
def test_imagenet_sized_photos_crop_as_today_at_full_dct_scale(tmp_path, decoder, interpolation):
    for path in write_photos(tmp_path).values():
        for seed in range(6):
            today = todays_crop(path, seed, interpolation)
            ours = fast_crop(path, seed, interpolation=interpolation, decoder=decoder)
            assert ours['img'].shape == today['img'].shape == (224, 224, 3) and ours['img'].dtype == np.uint8
            assert ours['ori_shape'] == (375, 500) and ours['img_shape'] == today['img_shape']
            assert psnr(ours['img'], today['img']) >= FULL_SCALE_PSNR, (path, seed)


@pytest.mark.parametrize('decoder', ['simplejpeg', 'pillow'])
def test_large_photos_decode_at_reduced_dct_scales_close_to_today(tmp_path, decoder):
    paths = write_photos(tmp_path, size=None, names=LARGE_PHOTOS)
    crop = RandomResizedCrop(224)
    scales = []
    for path in paths.values():
        size = mmcv.imread(path).shape[:2]
        for seed in range(10):
            np.random.seed(seed)
            scales.append(dct_scale(crop.rand_crop_params(np.empty((*size, 0)))[2:], (224, 224)))
            floor = FULL_SCALE_PSNR if scales[-1] == 1 else REDUCED_SCALE_PSNR
            assert psnr(fast_crop(path, seed, decoder=decoder)['img'], todays_crop(path, seed)['img']) >= floor
    assert {2, 4} <= set(scales)  # the reduced scales were exercised


def test_device_mode_sends_mmpretrains_crops_and_flips_for_the_same_seed(tmp_path):
    """The drawn parameters themselves: each crop and flip equals mmpretrain's RandomResizedCrop + RandomFlip
    draws in the same global numpy stream, over many draws (their statistics then agree as well)."""
    paths = list(write_photos(tmp_path, size=None, names=('astronaut', 'coffee', 'rocket')).values())
    shapes = {path: mmcv.imread(path).shape for path in paths}
    ours = DecodeRandomResizedCrop(224, crop_ratio_range=(0.08, 1.0), flip_prob=0.5, decode_on='device')
    theirs, flip = RandomResizedCrop(224), RandomFlip(0.5, 'horizontal')
    np.random.seed(0)
    sent = [split_encoded_crop(ours(dict(img_path=paths[i % 3]))['img'])[1] for i in range(600)]
    np.random.seed(0)
    drawn = []
    for i in range(600):
        box = theirs.rand_crop_params(np.empty(shapes[paths[i % 3]][:2] + (0, )))
        drawn.append([*box, 224, 224, int(flip(dict(img=np.empty((224, 224, 0))))['flip']), 0])
    assert sent == drawn
    sent = np.array(sent)
    assert 0.4 < sent[:, CROP_FIELDS.index('flip')].mean() < 0.6  # both flip states occur
    assert len(set(map(tuple, sent[:, :4]))) == 600  # and crops vary


def test_worker_mode_with_flip_equals_the_three_transforms(tmp_path):
    path = write_photos(tmp_path, names=('coffee', ))['coffee']
    flips = []
    for seed in range(8):
        today = todays_crop(path, seed, flip=True)
        ours = fast_crop(path, seed, flip_prob=0.5)
        assert ours['flip'] == today['flip'] and ours['flip_direction'] == today['flip_direction']
        assert psnr(ours['img'], today['img']) >= FULL_SCALE_PSNR
        flips.append(ours['flip'])
    assert set(flips) == {True, False}


def test_device_mode_sends_the_file_and_its_crop(tmp_path):
    path = write_photos(tmp_path, names=('coffee', ))['coffee']
    results = fast_crop(path, 0, decode_on='device', interpolation='bicubic')
    assert is_encoded_crop(results['img'])
    data, crop = split_encoded_crop(results['img'])
    assert data.dtype == torch.uint8 and bytes(data.numpy()) == open(path, 'rb').read()
    fields = dict(zip(CROP_FIELDS, crop))
    assert (fields['out_height'], fields['out_width'], fields['flip'], fields['interpolation']) == (224, 224, 0, 1)
    assert fields['top'] + fields['height'] <= 375 and fields['left'] + fields['width'] <= 500
    assert results['ori_shape'] == (375, 500) and results['img_shape'] == (224, 224, 3) and not results['flip']


def rotated_and_cmyk_jpegs(tmp_path) -> dict:
    rgb = np.asarray(Image.fromarray(skimage.data.coffee()).resize((200, 150)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: OpenCV applies it
    paths = {name: str(tmp_path / f'{name}.jpg') for name in ('rotated', 'cmyk', 'grey')}
    open(paths['rotated'], 'wb').write(jpeg_bytes(rgb, exif=exif.tobytes()))
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert('CMYK').save(buffer, 'JPEG', quality=90)
    open(paths['cmyk'], 'wb').write(buffer.getvalue())
    open(paths['grey'], 'wb').write(jpeg_bytes(rgb[..., 1]))
    return paths


@pytest.mark.parametrize('decode_on', ['worker', 'device'])
def test_files_off_the_fast_path_give_todays_exact_crop(tmp_path, decode_on):
    paths = write_files(tmp_path)
    paths.update(rotated_and_cmyk_jpegs(tmp_path))
    for name in ('good.png', 'rotated', 'cmyk'):
        for seed in range(3):
            today, ours = todays_crop(paths[name], seed), fast_crop(paths[name], seed, decode_on=decode_on)
            np.testing.assert_array_equal(ours['img'], today['img'])  # pixels even in device mode
            assert ours['ori_shape'] == today['ori_shape']
    assert todays_crop(paths['rotated'], 0)['ori_shape'] == (200, 150)  # the rotation was applied


def test_grey_jpeg_takes_the_fast_path_as_three_equal_channels(tmp_path):
    path = rotated_and_cmyk_jpegs(tmp_path)['grey']
    ours = fast_crop(path, 1)['img']
    assert ours.shape == (224, 224, 3) and (ours == ours[..., :1]).all()
    assert psnr(ours, todays_crop(path, 1)['img']) >= FULL_SCALE_PSNR
    assert is_encoded_crop(fast_crop(path, 1, decode_on='device')['img'])  # sent as bytes


@pytest.mark.parametrize('decode_on', ['worker', 'device'])
@pytest.mark.parametrize('name', ['truncated.jpg', 'garbage.jpg', 'empty.jpg', 'missing.jpg'])
def test_bad_file_raises_naming_it(tmp_path, decode_on, name):
    path = write_files(tmp_path)[name]
    with pytest.raises(UnreadableImageError, match=f'cannot load image {path}: '):
        fast_crop(path, 0, decode_on=decode_on)


def test_skip_mode_skips_bad_files_and_counts_them(tmp_path):
    paths = write_files(tmp_path)
    crop = DecodeRandomResizedCrop(32, on_error='skip')
    assert crop(dict(img_path=paths['truncated.jpg'])) is None and crop(dict(img_path=paths['missing.jpg'])) is None
    assert crop(dict(img_path=paths['good.jpg']))['img'].shape == (32, 32, 3)
    assert crop.skipped == 2


def test_arguments_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="interpolation must be one of \\('bilinear', 'bicubic'\\)"):
        DecodeRandomResizedCrop(224, interpolation='lanczos')
    with pytest.raises(ValueError, match='decode_on must be one of'):
        DecodeRandomResizedCrop(224, decode_on='gpu')
    with pytest.raises(ValueError, match='decoder must be one of'):
        DecodeRandomResizedCrop(224, decoder='turbojpeg')
    with pytest.raises(ValueError, match='3-channel uint8'):
        DecodeRandomResizedCrop(224, to_float32=True)
    monkeypatch.setattr(jpeg_decode, 'simplejpeg', None)
    with pytest.raises(ImportError, match='simplejpeg'):
        DecodeRandomResizedCrop(224, decoder='simplejpeg')
    assert DecodeRandomResizedCrop(224).decoder == 'pillow'  # the pure-Pillow fallback
    assert "decode_on='worker', decoder='pillow'" in repr(DecodeRandomResizedCrop(224))


def test_registered_in_our_scope():
    from fdclip_mm.registry import TRANSFORMS
    assert TRANSFORMS.get('DecodeRandomResizedCrop') is module.DecodeRandomResizedCrop
