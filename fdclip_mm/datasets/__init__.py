"""Data transforms that mmpretrain/mmcv do not provide."""
from .load_image import CheckedLoadImageFromFile, UnreadableImageError, is_truncated_jpeg

__all__ = ['CheckedLoadImageFromFile', 'UnreadableImageError', 'is_truncated_jpeg']
