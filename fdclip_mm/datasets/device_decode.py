"""Decoding a batch of JPEGs on a device and making each one's crop there (``DecodeRandomResizedCrop(decode_on=
'device')``): nvJPEG on a CUDA device, libjpeg-turbo on the CPU (the same code, which the tests run).

A loader worker sends each image as one *encoded crop*: a 1-D uint8 tensor holding a tag, the crop's
:data:`CROP_FIELDS` (int64) and the JPEG file's bytes. One tensor per sample passes mmengine's collate functions
and ``pin_memory`` unchanged (a pair would be transposed by ``pseudo_collate``).
"""
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from .load_image import UnreadableImageError
from .resized_crop import INTERPOLATIONS, resized_crop

#: What the crop part of an encoded crop holds, in order.
CROP_FIELDS = ('top', 'left', 'height', 'width', 'out_height', 'out_width', 'flip', 'interpolation')
TAG = b'FDCROP01'
HEADER_BYTES = len(TAG) + 8 * len(CROP_FIELDS)


def encode_crop(data: bytes, crop: Sequence[int]) -> torch.Tensor:
    """One tensor holding a JPEG file's bytes and its crop (:data:`CROP_FIELDS`)."""
    if len(crop) != len(CROP_FIELDS):
        raise ValueError(f'a crop has the {len(CROP_FIELDS)} fields {CROP_FIELDS}, got {crop!r}')
    header = TAG + torch.tensor(crop, dtype=torch.int64).numpy().tobytes()
    return torch.frombuffer(bytearray(header + data), dtype=torch.uint8)


def is_encoded_crop(sample) -> bool:
    """Whether ``sample`` is an encoded crop (:func:`encode_crop`)."""
    return (isinstance(sample, torch.Tensor) and sample.ndim == 1 and sample.dtype == torch.uint8
            and len(sample) > HEADER_BYTES and bytes(sample[:len(TAG)].tolist()) == TAG)


def split_encoded_crop(sample: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
    """The file bytes (a view) and the crop of an encoded crop."""
    return sample[HEADER_BYTES:], sample[len(TAG):HEADER_BYTES].view(torch.int64).tolist()


def _decode(data: Union[torch.Tensor, List[torch.Tensor]], device: torch.device):
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image decoders for TorchCodec's (>= 0.16, the same call); ours stays on
        # torchvision, which every torch installation for this project has, until TorchCodec ships with it too
        warnings.filterwarnings('ignore', message='The image decoding and encoding capabilities of TorchVision')
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_jpegs(data: Sequence[torch.Tensor], device: torch.device, names: Sequence[str]) -> List[torch.Tensor]:
    """RGB uint8 (3, H, W) images on ``device`` from JPEG bytes (1-D uint8 CPU tensors), decoded as one batch.

    Args:
        data: Each file's bytes.
        device: Where to decode (CUDA: nvJPEG's batched decoder).
        names: Each file's name, for errors.

    Raises:
        UnreadableImageError: Naming the first file of the batch that cannot be decoded (the batched decoder
            fails as a whole; the files are then tried one by one to find it).
    """
    try:
        return _decode(list(data), device)
    except RuntimeError as batch_error:
        for one, name in zip(data, names):
            try:
                _decode(one, device)
            except RuntimeError as err:
                raise UnreadableImageError(f'cannot decode image {name} on {device}: {err}') from err
        raise batch_error


def decode_resized_crops(samples: Sequence[torch.Tensor],
                         device: torch.device,
                         names: Optional[Sequence[str]] = None) -> List[torch.Tensor]:
    """Each sample's crop, resized and flipped as its crop tensor says: RGB float32 (3, h, w) on ``device``.

    The resampling is :func:`~fdclip_mm.datasets.resized_crop.resized_crop` in float32 (the worker path's
    filter, without its rounding to uint8).

    Args:
        samples: Encoded crops (:func:`encode_crop`), on the CPU.
        device: Where to decode and resample.
        names: The files' names (e.g. ``img_path``), for errors.

    Returns:
        list[torch.Tensor]: One image per sample.
    """
    names = list(names) if names is not None else [f'sample {i} of the batch' for i in range(len(samples))]
    files, crops = zip(*map(split_encoded_crop, samples)) if samples else ((), ())
    images = decode_jpegs(files, device, names)
    out = []
    for image, crop, name in zip(images, crops, names):
        top, left, height, width, out_height, out_width, flip, interpolation = crop
        if top + height > image.shape[1] or left + width > image.shape[2]:
            raise UnreadableImageError(f'image {name} decodes to {image.shape[2]}x{image.shape[1]}, smaller than '
                                       f'its crop {width}x{height} at ({left}, {top}) drawn from its header')
        pixels = image[None, :, top:top + height, left:left + width].float()
        resized = resized_crop(pixels, (0, 0, height, width), (out_height, out_width), INTERPOLATIONS[interpolation])
        out.append(resized[0].flip(-1) if flip else resized[0])
    return out
