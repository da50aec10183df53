"""One antialiased resampling of a crop, as Pillow resizes the cropped image (mmpretrain's RandomResizedCrop:
``mmcv.imcrop`` then Pillow's ``resize``)."""
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from fdclip_mm.datasets.resized_crop import check_interpolation, resized_crop

FILTERS = dict(bilinear=Image.BILINEAR, bicubic=Image.BICUBIC)


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic'])
@pytest.mark.parametrize('box', [(10, 20, 300, 280), (0, 0, 400, 600), (50, 60, 120, 90)])
def test_uint8_and_float_resampling_follow_pillow(interpolation, box):
    rgb = skimage.data.coffee()
    top, left, height, width = box
    crop = Image.fromarray(rgb[top:top + height, left:left + width])
    pillow = np.asarray(crop.resize((224, 160), FILTERS[interpolation])).astype(float)
    hwc = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    uint8 = resized_crop(hwc, box, (160, 224), interpolation)
    floats = resized_crop(hwc.float().contiguous(), box, (160, 224), interpolation)
    assert uint8.dtype == torch.uint8 and floats.dtype == torch.float32 and uint8.shape == (1, 3, 160, 224)
    assert 0 <= floats.min() and floats.max() <= 255  # bicubic overshoot clipped, as Pillow does
    for ours in (uint8, floats):
        ours = ours[0].permute(1, 2, 0).double().numpy()
        # Pillow rounds to uint8 between its horizontal and vertical passes (and at the end); torch's float
        # path does not round at all: a few levels apart at a few pixels, well under one on average
        error = np.abs(ours - pillow)
        assert error.mean() < 0.4 and np.mean(error**2) < 255**2 / 1e5  # PSNR > 50 dB


def test_check_interpolation():
    assert check_interpolation('bicubic') == 'bicubic'
    with pytest.raises(ValueError, match="got 'nearest': use mmpretrain's RandomResizedCrop"):
        check_interpolation('nearest')
