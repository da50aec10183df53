"""DistillDataPreprocessor: the student's and the teacher's normalisation of one batch, from images the workers
decoded or from (file bytes, crop) pairs decoded on the preprocessor's device (the CPU here, the same code)."""
import mmcv
import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmpretrain.datasets.transforms import PackInputs

from fdclip_mm.datasets import DecodeRandomResizedCrop, UnreadableImageError
from fdclip_mm.datasets.device_decode import encode_crop, is_encoded_crop, split_encoded_crop
from fdclip_mm.models.algorithms import DistillDataPreprocessor
from fdclip_mm.models.image_statistics import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from ...datasets.photos import write_photos


def batch(paths, decode_on: str, collate, seed: int = 0) -> dict:
    crop = DecodeRandomResizedCrop(224, flip_prob=0.5, decode_on=decode_on)  # full DCT scale on these photos
    np.random.seed(seed)
    return collate([PackInputs()(crop(dict(img_path=path))) for path in paths])


def unnormalised(tensor: torch.Tensor, mean, std) -> torch.Tensor:
    return tensor * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)


def test_worker_batch_is_normalised_once_per_network():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    out = DistillDataPreprocessor(teacher_mean=CLIP_MEAN, teacher_std=CLIP_STD)(dict(inputs=images), True)['inputs']
    rgb = images.flip(1).float()
    torch.testing.assert_close(out['student'], (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) /
                               torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    assert len(out['teachers']) == 1  # one batch per teacher, whatever their number
    torch.testing.assert_close(unnormalised(out['teachers'][0], CLIP_MEAN, CLIP_STD), rgb, atol=1e-4, rtol=0)


def test_device_decoded_batch_equals_the_worker_decoded_one(tmp_path):
    paths = list(write_photos(tmp_path).values())
    preprocessor = DistillDataPreprocessor(teacher_mean=CLIP_MEAN, teacher_std=CLIP_STD)
    worker = preprocessor(batch(paths, 'worker', default_collate), True)['inputs']
    sent = batch(paths, 'device', pseudo_collate)
    assert all(is_encoded_crop(sample) for sample in sent['inputs'])
    device = preprocessor(sent, True)['inputs']
    assert device['student'].shape == worker['student'].shape == (4, 3, 224, 224)
    for key, (mean, std) in dict(student=(IMAGENET_MEAN, IMAGENET_STD), teachers=(CLIP_MEAN, CLIP_STD)).items():
        device_batch, worker_batch = (d[key][0] if key == 'teachers' else d[key] for d in (device, worker))
        error = unnormalised(device_batch, mean, std) - unnormalised(worker_batch, mean, std)
        # the same crops and flips; the workers' images are rounded to uint8, the device's are not
        assert error.abs().mean() < 0.5 and error.abs().max() < 8, key


def test_a_file_off_the_fast_path_joins_the_device_decoded_batch(tmp_path):
    paths = list(write_photos(tmp_path, names=('coffee', 'rocket')).values())
    png = str(tmp_path / 'chelsea.png')
    mmcv.imwrite(mmcv.imread(paths[0])[:300, :400], png)
    paths.append(png)
    preprocessor = DistillDataPreprocessor()
    sent = batch(paths, 'device', pseudo_collate)
    assert sent['inputs'][2].shape == (3, 224, 224)  # the PNG arrives as the worker's BGR pixels
    worker = preprocessor(batch(paths, 'worker', default_collate), True)['inputs']['student']
    device = preprocessor(sent, True)['inputs']['student']
    torch.testing.assert_close(device[2], worker[2])  # same pixels, both turned to RGB
    assert (device[:2] - worker[:2]).abs().mean() < 0.01


def test_an_undecodable_file_is_named(tmp_path):
    paths = list(write_photos(tmp_path, names=('coffee', 'rocket')).values())
    sent = batch(paths, 'device', pseudo_collate)
    data, crop = split_encoded_crop(sent['inputs'][1])
    sent['inputs'][1] = encode_crop(bytes(data[:len(data) // 2].numpy()), crop)
    with pytest.raises(UnreadableImageError, match=f'cannot decode image {paths[1]}'):
        DistillDataPreprocessor()(sent, True)
