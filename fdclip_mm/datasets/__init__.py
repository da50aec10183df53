"""Data transforms that mmpretrain/mmcv do not provide."""
from .decode_random_resized_crop import DecodeRandomResizedCrop
from .load_image import CheckedLoadImageFromFile, UnreadableImageError, is_truncated_jpeg

__all__ = ['CheckedLoadImageFromFile', 'DecodeRandomResizedCrop', 'UnreadableImageError', 'is_truncated_jpeg']
