from .base_teacher import BaseTeacher
from .clip_teacher import CLIPTeacher
from .dinov2_teacher import DINOv2Teacher

__all__ = ['BaseTeacher', 'CLIPTeacher', 'DINOv2Teacher']
