"""Image loading that fails loudly on a corrupted or truncated file, or skips it (counted and logged).

mmcv's ``LoadImageFromFile`` with its default OpenCV decoder *silently* decodes a truncated JPEG (the missing
rows come out grey), and a few other failures (an empty file) raise errors that do not name the file.
:class:`CheckedLoadImageFromFile` detects truncated JPEGs, names the file in every error, and with
``on_error='skip'`` returns None instead: mmengine's ``BaseDataset`` then draws another index in training,
so every epoch still yields its full number of samples.
"""
import io
import logging
import os
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log
from PIL import Image

from fdclip_mm.registry import TRANSFORMS

ON_ERROR_MODES = ('raise', 'skip')
JPEG_START = b'\xff\xd8'
JPEG_END = b'\xff\xd9'


class UnreadableImageError(OSError):
    """An image file that cannot be read or decoded completely; the message names the file."""


def is_truncated_jpeg(data: bytes) -> bool:
    """Whether ``data`` is a JPEG whose end is missing.

    A complete JPEG ends with the end-of-image marker (entropy-coded data can never contain it). Files with
    bytes after that marker (some cameras append trailers) are decoded by Pillow, which fails only if the
    image data itself is cut short.

    Args:
        data: The file's bytes.

    Returns:
        bool: True for a JPEG that cannot be decoded whole.
    """
    if not data.startswith(JPEG_START) or data.endswith(JPEG_END) or data.rstrip(b'\x00').endswith(JPEG_END):
        return False  # not a JPEG, or complete (possibly zero-padded)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that names the file on any failure and can skip unreadable files.

    Args:
        *args: Passed to mmcv's ``LoadImageFromFile``.
        on_error: ``'raise'`` (default): :class:`UnreadableImageError` naming the file. ``'skip'``: return
            None (training datasets only: mmengine refuses None in test mode) and log a warning naming the
            file the first time this process meets it (``skipped`` counts every skip).
        **kwargs: Passed to mmcv's ``LoadImageFromFile`` (``ignore_empty`` is replaced by ``on_error``).
    """

    def __init__(self, *args, on_error: str = 'raise', **kwargs) -> None:
        if on_error not in ON_ERROR_MODES:
            raise ValueError(f'on_error must be one of {ON_ERROR_MODES}, got {on_error!r}')
        if kwargs.get('ignore_empty'):
            raise ValueError("ignore_empty skips files silently; use on_error='skip' (counted and logged)")
        super().__init__(*args, **kwargs)
        self.on_error = on_error
        self.skipped = 0
        self._reported = set()

    def _read_bytes(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            return fileio.FileClient.infer_client(self.file_client_args, filename).get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def _checked_bytes(self, filename: str) -> bytes:
        data = self._read_bytes(filename)
        if not data:
            raise UnreadableImageError('empty file (0 bytes)')
        if is_truncated_jpeg(data):
            raise UnreadableImageError(f'truncated JPEG ({len(data)} bytes, the end of the image is missing)')
        return data

    def _decode_bytes(self, data: bytes) -> np.ndarray:
        img = mmcv.imfrombytes(data, flag=self.color_type, backend=self.imdecode_backend)
        if img is None:
            raise UnreadableImageError(f'the {self.imdecode_backend} decoder cannot read it ({len(data)} bytes)')
        return img

    def _decode(self, filename: str) -> np.ndarray:
        return self._decode_bytes(self._checked_bytes(filename))

    def _failed(self, filename: str, err: Exception) -> None:
        """Raises :class:`UnreadableImageError` naming ``filename``, or (skip mode) counts, logs, returns None."""
        reason = f'{type(err).__name__}: {err}'
        if self.on_error == 'raise':
            raise UnreadableImageError(f'cannot load image {filename}: {reason}') from err
        self.skipped += 1
        if filename not in self._reported:  # once per file and process: datasets redraw a bad index often
            self._reported.add(filename)
            print_log(
                f'skipped unreadable image {filename} ({reason}); {len(self._reported)} unreadable '
                f'file(s) so far in this data-loading process (pid {os.getpid()}), each logged once',
                logger='current',
                level=logging.WARNING)
        return None

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']``; None (skip mode only) when it cannot be read."""
        filename = results['img_path']
        try:
            img = self._decode(filename)
        except Exception as err:
            return self._failed(filename, err)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, on_error={self.on_error!r})'
