"""Header reading and reduced-scale JPEG decoding: which files the fast path takes, and the same pixels from
simplejpeg, Pillow and OpenCV (the checked loader's decoder)."""
import io

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from fdclip_mm.datasets.jpeg_decode import dct_scale, decode_jpeg, resolve_decoder, upright_jpeg_size
from .photos import jpeg_bytes


@pytest.mark.parametrize('crop, out, scale', [((224, 224), (224, 224), 1), ((447, 900), (224, 224), 1),
                                              ((448, 448), (224, 224), 2), ((1000, 900), (224, 224), 4),
                                              ((3000, 1792), (224, 224), 8), ((100, 100), (224, 224), 1),
                                              ((500, 900), (224, 448), 2)])
def test_dct_scale_is_the_largest_reduction_keeping_the_output_size(crop, out, scale):
    assert dct_scale(crop, out) == scale


def test_upright_jpeg_size_accepts_colour_and_grey_jpegs_only():
    rgb = skimage.data.coffee()  # 400 x 600
    assert upright_jpeg_size(jpeg_bytes(rgb)) == (400, 600)
    assert upright_jpeg_size(jpeg_bytes(rgb[..., 0])) == (400, 600)
    exif = Image.Exif()
    exif[0x0112] = 1
    assert upright_jpeg_size(jpeg_bytes(rgb, exif=exif.tobytes())) == (400, 600)  # orientation 1: upright
    exif[0x0112] = 8
    assert upright_jpeg_size(jpeg_bytes(rgb, exif=exif.tobytes())) is None
    png, cmyk = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(png, 'PNG')
    Image.fromarray(rgb).convert('CMYK').save(cmyk, 'JPEG')
    assert upright_jpeg_size(png.getvalue()) is None and upright_jpeg_size(cmyk.getvalue()) is None
    assert upright_jpeg_size(b'\xff\xd8 not really a JPEG') is None and upright_jpeg_size(b'') is None


@pytest.mark.parametrize('grey', [False, True])
def test_decoders_give_opencvs_pixels_at_full_scale_and_agree_when_reduced(grey):
    rgb = skimage.data.astronaut()  # 512 x 512
    data = jpeg_bytes(rgb[..., 1] if grey else rgb)
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    for decoder in ('simplejpeg', 'pillow'):
        ours = decode_jpeg(data, (512, 512), 1, decoder)
        np.testing.assert_array_equal(ours, reference)
        assert ours.flags.writeable and ours.flags.c_contiguous  # torch.from_numpy takes it as it is
    for scale in (2, 4, 8):
        ours = decode_jpeg(data, (512, 512), scale, 'simplejpeg')
        assert ours.shape == (512 // scale, 512 // scale, 3) and ours.flags.writeable
        np.testing.assert_array_equal(ours, decode_jpeg(data, (512, 512), scale, 'pillow'))
        shrunk = cv2.resize(reference, ours.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(ours.astype(int) - shrunk).mean() < 3  # a downscaled image of the same photo


def test_odd_sizes_round_up_as_libjpeg():
    data = jpeg_bytes(skimage.data.coffee()[:397, :599])
    assert decode_jpeg(data, (397, 599), 4, 'simplejpeg').shape == (100, 150, 3)
    assert decode_jpeg(data, (397, 599), 4, 'pillow').shape == (100, 150, 3)


def test_resolve_decoder():
    assert resolve_decoder('auto') == 'simplejpeg' and resolve_decoder('pillow') == 'pillow'
    with pytest.raises(ValueError, match="decoder must be one of \\('auto', 'simplejpeg', 'pillow'\\)"):
        resolve_decoder('cv2')
