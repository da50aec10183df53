"""Decoding a batch of (file bytes, crop) pairs on a device, run on the CPU: the crops the workers would make."""
import re

import numpy as np
import pytest
import torch

from fdclip_mm.datasets import DecodeRandomResizedCrop, UnreadableImageError
from fdclip_mm.datasets.device_decode import (CROP_FIELDS, decode_resized_crops, encode_crop, is_encoded_crop,
                                              split_encoded_crop)
from ..helpers.images import FULL_SCALE_PSNR, psnr
from .photos import write_photos


def worker_and_device_samples(paths, interpolation='bilinear', seeds=range(4)):
    """The same crops (same seeds) made by a worker and sent for the device."""
    worker = DecodeRandomResizedCrop(224, interpolation=interpolation, flip_prob=0.5)
    device = DecodeRandomResizedCrop(224, interpolation=interpolation, flip_prob=0.5, decode_on='device')
    made, sent = [], []
    for seed in seeds:
        for path in paths:
            np.random.seed(seed)
            made.append(worker(dict(img_path=path)))
            np.random.seed(seed)
            sent.append(device(dict(img_path=path)))
    return made, sent


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic'])
def test_device_crops_equal_the_workers_up_to_rounding(tmp_path, interpolation):
    paths = list(write_photos(tmp_path).values())
    made, sent = worker_and_device_samples(paths, interpolation)
    assert all(is_encoded_crop(s['img']) for s in sent)
    crops = decode_resized_crops([s['img'] for s in sent], torch.device('cpu'), paths * 4)
    assert {s['flip'] for s in sent} == {True, False}
    for crop, worker in zip(crops, made):
        assert crop.dtype == torch.float32 and crop.shape == (3, 224, 224)
        rgb = crop.round().permute(1, 2, 0).numpy()
        assert psnr(rgb, worker['img'][..., ::-1]) >= FULL_SCALE_PSNR  # the worker's image is BGR


def test_a_file_the_decoder_rejects_is_named(tmp_path):
    paths = list(write_photos(tmp_path, names=('coffee', 'rocket')).values())
    _, sent = worker_and_device_samples(paths, seeds=[0])
    data, crop = split_encoded_crop(sent[1]['img'])
    samples = [sent[0]['img'], encode_crop(bytes(data[:len(data) // 2].numpy()), crop)]
    with pytest.raises(UnreadableImageError, match=f'cannot decode image {paths[1]} on cpu'):
        decode_resized_crops(samples, torch.device('cpu'), paths)


def test_a_crop_outside_the_decoded_image_is_named(tmp_path):
    path = write_photos(tmp_path, names=('coffee', ))['coffee']
    _, sent = worker_and_device_samples([path], seeds=[0])
    data, crop = split_encoded_crop(sent[0]['img'])
    crop[0] = 370  # top: the image has 375 rows
    with pytest.raises(UnreadableImageError, match=f'image {path} decodes to 500x375, smaller than its crop'):
        decode_resized_crops([encode_crop(bytes(data.numpy()), crop)], torch.device('cpu'), [path])


def test_an_encoded_crop_is_one_tensor_that_keeps_its_parts():
    crop = [1, 2, 30, 40, 24, 32, 1, 0]
    encoded = encode_crop(b'\xff\xd8 jpeg bytes', crop)
    assert is_encoded_crop(encoded) and encoded.dtype == torch.uint8 and encoded.ndim == 1
    data, back = split_encoded_crop(encoded)
    assert bytes(data.numpy()) == b'\xff\xd8 jpeg bytes' and back == crop
    assert not is_encoded_crop(torch.zeros(3, 4, 4, dtype=torch.uint8))
    assert not is_encoded_crop(torch.zeros(100, dtype=torch.uint8))  # no tag: not ours
    with pytest.raises(ValueError, match=re.escape(f'the 8 fields {CROP_FIELDS}')):
        encode_crop(b'', crop[:4])
