"""Reading a JPEG's size from its header and decoding it at a reduced DCT scale.

libjpeg(-turbo) can decode at 1/2, 1/4 or 1/8 of the full size by computing fewer inverse-DCT outputs per 8x8
block: a crop that is resized to a fraction of its size anyway then costs a fraction of the decoding. The
decoder is ``simplejpeg`` (libjpeg-turbo, wheels for Linux, macOS and Windows) when it is installed and Pillow's
``Image.draft`` otherwise; both return the same pixels at full scale (libjpeg-turbo's accurate integer DCT and
smooth chroma upsampling, as OpenCV's decoder, which our checked loader uses).
"""
import io
from typing import Optional, Tuple

import numpy as np
from PIL import ExifTags, Image

try:
    import simplejpeg
except ImportError:  # optional: Pillow decodes the same images, ~1.5x slower here (benchmarks/README.md)
    simplejpeg = None

JPEG_START = b'\xff\xd8'
#: The reductions libjpeg computes in the DCT domain that both decoders offer, largest first.
DCT_SCALES = (8, 4, 2, 1)
DECODERS = ('auto', 'simplejpeg', 'pillow')


def upright_jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) of a colour or grey JPEG whose pixels are stored upright, from its header alone.

    None for every other file: not a JPEG, a CMYK/YCCK JPEG, or one whose EXIF orientation asks for a
    rotation or mirroring (OpenCV's decoder applies it). Those take the general decoder.

    Args:
        data: The file's bytes.

    Returns:
        tuple | None: ``(height, width)``, or None.
    """
    if not data.startswith(JPEG_START):
        return None
    try:
        image = Image.open(io.BytesIO(data))
        if image.format != 'JPEG' or image.mode not in ('RGB', 'L'):
            return None
        if 'exif' in image.info and image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            return None
    except (OSError, SyntaxError, ValueError):  # a broken header: the general decoder names the problem
        return None
    return image.height, image.width


def dct_scale(crop_size: Tuple[int, int], out_size: Tuple[int, int]) -> int:
    """The largest of :data:`DCT_SCALES` at which a ``crop_size`` (h, w) crop still has ``out_size`` pixels.

    Args:
        crop_size: The crop's (height, width) at full scale.
        out_size: The (height, width) it is resized to.

    Returns:
        int: The reduction (1 = full scale).
    """
    for scale in DCT_SCALES:
        if crop_size[0] >= out_size[0] * scale and crop_size[1] >= out_size[1] * scale:
            return scale
    return 1


def resolve_decoder(decoder: str) -> str:
    """``'simplejpeg'`` or ``'pillow'`` for ``decoder`` in :data:`DECODERS` (``'auto'``: simplejpeg if installed)."""
    if decoder not in DECODERS:
        raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
    if decoder == 'auto':
        return 'simplejpeg' if simplejpeg is not None else 'pillow'
    if decoder == 'simplejpeg' and simplejpeg is None:
        raise ImportError("decoder='simplejpeg' needs the simplejpeg package (pip install simplejpeg)")
    return decoder


def decode_jpeg(data: bytes, size: Tuple[int, int], scale: int, decoder: str) -> np.ndarray:
    """A JPEG's pixels, BGR, (ceil(h / scale), ceil(w / scale), 3) uint8, decoded at 1/``scale`` in the DCT domain.

    Args:
        data: A JPEG that :func:`upright_jpeg_size` accepts.
        size: Its full (height, width).
        scale: One of :data:`DCT_SCALES`.
        decoder: ``'simplejpeg'`` or ``'pillow'`` (see :func:`resolve_decoder`).

    Returns:
        np.ndarray: The decoded image (writable).
    """
    height, width = -(-size[0] // scale), -(-size[1] // scale)
    if decoder == 'simplejpeg':
        # min_factor=scale and the sizes at 1/scale pin libjpeg's factor to exactly 1/scale (simplejpeg would
        # otherwise also pick factors such as 7/8, which libjpeg-turbo computes without SIMD); strict=False
        # decodes what OpenCV decodes (a corrupt-data warning is not an error there either)
        image = simplejpeg.decode_jpeg(
            data, colorspace='BGR', min_height=height, min_width=width, min_factor=scale, strict=False)
    else:
        with Image.open(io.BytesIO(data)) as pil_image:
            if scale > 1:
                pil_image.draft('RGB', (size[1] // scale, size[0] // scale))  # picks exactly 1/scale
            rgb = pil_image.convert('RGB') if pil_image.mode != 'RGB' else pil_image
            # Pillow's packer writes BGR in one pass (numpy's reversed-channel copy is several times slower)
            bgr = bytearray(rgb.tobytes('raw', 'BGR'))
        image = np.frombuffer(bgr, dtype=np.uint8).reshape(rgb.height, rgb.width, 3)
    if image.shape[:2] != (height, width):
        raise ValueError(f'the {decoder} decoder gave a {image.shape[1]}x{image.shape[0]} image at 1/{scale} of '
                         f'{size[1]}x{size[0]}, expected {width}x{height}')
    return image
