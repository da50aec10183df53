"""Loading an image and mmpretrain's RandomResizedCrop of it in one step that decodes a JPEG only as far as the crop
needs, on the loader's CPU or (its bytes sent on) on the model's device."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.image.geometric import pillow_interp_codes
from mmcv.transforms import RandomFlip
from mmpretrain.datasets.transforms import RandomResizedCrop
from PIL import Image

from fdclip_mm.registry import TRANSFORMS
from .device_decode import encode_crop
from .jpeg_decode import dct_scale, decode_jpeg, resolve_decoder, upright_jpeg_size
from .load_image import CheckedLoadImageFromFile
from .resized_crop import INTERPOLATIONS, check_interpolation, resized_crop

DECODE_ON = ('worker', 'device')


def shape_only(height: int, width: int) -> np.ndarray:
    """An array with the shape of a (height, width) image and no pixels, for code that reads only ``.shape``."""
    return np.empty((height, width, 0), dtype=np.uint8)


def resample(image: np.ndarray,
             box: Tuple[int, int, int, int],
             scale: int,
             size: Tuple[int, int],
             interpolation: str,
             flip: bool = False) -> np.ndarray:
    """The full-scale ``box`` (top, left, height, width) of ``image`` (decoded at 1/``scale``) resized to ``size``
    (and mirrored left to right if ``flip``), a C-contiguous array.

    At full scale torch resamples uint8 with Pillow's filters (:func:`resized_crop`, ~3x faster than Pillow
    here). At a reduced scale the box's edges fall between pixels (reduced pixel j covers full-scale pixels
    [j * scale, (j + 1) * scale)): Pillow resamples such a box exactly, torch only whole pixels (rounding the
    edges costs up to 9 dB of PSNR against today's crop; the resampling is a small part of decoding a large
    photo).
    """
    top, left, height, width = box
    if scale == 1:
        # a channels-last copy of the crop: torch's fastest uint8 kernel, and its output is then HWC memory
        crop = torch.from_numpy(image[top:top + height, left:left + width]).permute(2, 0, 1)[None]
        crop = crop.contiguous(memory_format=torch.channels_last)
        out = resized_crop(crop, (0, 0, height, width), size, interpolation)[0]
        return (out.flip(-1) if flip else out).permute(1, 2, 0).numpy()
    edges = (left / scale, top / scale, (left + width) / scale, (top + height) / scale)
    out = Image.fromarray(image).resize(size[::-1], pillow_interp_codes[interpolation], box=edges)
    return np.array(out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out)


@TRANSFORMS.register_module()
class DecodeRandomResizedCrop(CheckedLoadImageFromFile):
    """:class:`CheckedLoadImageFromFile` and mmpretrain's ``RandomResizedCrop(backend='pillow')`` in one transform.

    The crop is drawn by mmpretrain's ``RandomResizedCrop.rand_crop_params`` from the image size in the file's
    header, before any pixel is decoded, with the same draws from numpy's global generator as the two
    transforms: a seeded run makes the same crops (and a following ``RandomFlip``, or ``flip_prob`` here, the
    same flips). Then, for a JPEG:

    - ``decode_on='worker'``: the JPEG is decoded at the largest DCT reduction (1/2, 1/4, 1/8) at which the crop
      still has as many pixels per side as the output (:func:`~fdclip_mm.datasets.jpeg_decode.dct_scale`), and
      the crop is cut and resized in one antialiased resampling with Pillow's filters (:func:`resample`).
      ``results['img']`` is the BGR uint8 image, as after the two transforms: at full DCT scale equal to theirs
      up to rounding, at a reduced one through a slightly different low-pass filter
      (``tests/datasets/test_decode_random_resized_crop.py`` states the PSNR floors).
    - ``decode_on='device'``: nothing is decoded here. ``results['img']`` is the file's bytes with the crop
      (:func:`~fdclip_mm.datasets.device_decode.encode_crop`); the data preprocessor decodes the batch on its
      device and crops, resizes and flips there (:func:`~fdclip_mm.datasets.device_decode.decode_resized_crops`).
      The loader needs ``collate_fn=dict(type='pseudo_collate')`` (files differ in length) and the flip must be
      drawn here (``flip_prob``): mmcv's ``RandomFlip`` cannot flip bytes.

    Other files (PNG and other formats, CMYK JPEGs, JPEGs with an EXIF rotation) are decoded by the checked
    loader and cropped by mmpretrain's ``RandomResizedCrop`` itself, exactly as the two transforms do (in
    device mode too, sent as pixels). Unreadable files raise (or are skipped) naming the file, as with
    :class:`CheckedLoadImageFromFile`.

    Args:
        scale: Output size, int or (height, width), as mmpretrain's ``RandomResizedCrop``.
        crop_ratio_range: Range of the crop's area over the image's.
        aspect_ratio_range: Range of the crop's aspect ratio.
        max_attempts: Draws before the central-crop fallback.
        interpolation: ``'bilinear'`` or ``'bicubic'``.
        flip_prob: Probability of a horizontal flip drawn and applied here (0: none; keep mmcv's ``RandomFlip``
            after this transform in ``decode_on='worker'`` pipelines).
        decode_on: ``'worker'`` or ``'device'`` (see above).
        decoder: JPEG decoder of the worker path: ``'auto'`` (simplejpeg if installed, else Pillow), ``'simplejpeg'``
            or ``'pillow'``.
        on_error: ``'raise'`` or ``'skip'``, as :class:`CheckedLoadImageFromFile`.
        **kwargs: The file-reading arguments of mmcv's ``LoadImageFromFile`` (``backend_args``,
            ``imdecode_backend`` of the general decoder, ...).
    """

    def __init__(self,
                 scale: Union[int, Sequence[int]],
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10,
                 interpolation: str = 'bilinear',
                 flip_prob: float = 0.,
                 decode_on: str = 'worker',
                 decoder: str = 'auto',
                 on_error: str = 'raise',
                 **kwargs) -> None:
        if decode_on not in DECODE_ON:
            raise ValueError(f'decode_on must be one of {DECODE_ON}, got {decode_on!r}')
        if kwargs.get('to_float32') or kwargs.get('color_type', 'color') != 'color':
            raise ValueError('DecodeRandomResizedCrop gives 3-channel uint8 images (to_float32=False, '
                             f"color_type='color'); got {kwargs}")
        super().__init__(on_error=on_error, **kwargs)
        self.crop = RandomResizedCrop(
            scale,
            crop_ratio_range=crop_ratio_range,
            aspect_ratio_range=aspect_ratio_range,
            max_attempts=max_attempts,
            interpolation=check_interpolation(interpolation),
            backend='pillow')
        self.flip = RandomFlip(prob=flip_prob, direction='horizontal') if flip_prob > 0 else None
        self.decode_on = decode_on
        self.decoder = resolve_decoder(decoder)

    @property
    def out_size(self) -> Tuple[int, int]:
        """Output (height, width)."""
        return tuple(self.crop.scale)

    def transform(self, results: dict) -> Optional[dict]:
        """Loads ``results['img_path']`` and crops it; None (skip mode only) when the file cannot be read."""
        filename = results['img_path']
        try:
            data = self._checked_bytes(filename)
            size = upright_jpeg_size(data)
            if size is None:
                image = self._decode_bytes(data)
            else:
                box = self.crop.rand_crop_params(shape_only(*size))
                scale = dct_scale(box[2:], self.out_size)
                if self.decode_on == 'worker':
                    image = decode_jpeg(data, size, scale, self.decoder)
        except Exception as err:
            return self._failed(filename, err)
        if size is None:
            return self._general(results, image)
        if self.decode_on == 'device':
            return self._encoded(results, data, size, box)
        results.update(self._draw_flip())
        img = resample(image, box, scale, self.out_size, self.crop.interpolation, results['flip'])
        results.update(img=img, img_shape=img.shape, ori_shape=size)
        return results

    def _general(self, results: dict, image: np.ndarray) -> dict:
        """Today's path: mmpretrain's RandomResizedCrop (and the flip) on the decoded image."""
        results.update(img=image, ori_shape=image.shape[:2])
        results = self.crop(results)
        return self.flip(results) if self.flip else results

    def _draw_flip(self) -> dict:
        """``flip`` and ``flip_direction`` drawn by mmcv's ``RandomFlip`` (applied by the caller)."""
        if not self.flip:
            return dict(flip=False, flip_direction=None)
        drawn = self.flip(dict(img=shape_only(*self.out_size)))
        return dict(flip=bool(drawn['flip']), flip_direction=drawn['flip_direction'])

    def _encoded(self, results: dict, data: bytes, size: Tuple[int, int], box: Tuple[int, int, int, int]) -> dict:
        """The file's bytes and its crop, for decoding on the device."""
        results.update(self._draw_flip())
        crop = (*box, *self.out_size, int(results['flip']), INTERPOLATIONS.index(self.crop.interpolation))
        results.update(img=encode_crop(data, crop), ori_shape=size, img_shape=(*self.out_size, 3))
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({self.crop!r}, flip_prob={self.flip.prob if self.flip else 0.}, '
                f'decode_on={self.decode_on!r}, decoder={self.decoder!r}, on_error={self.on_error!r})')
