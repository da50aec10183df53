from .base_teacher import BaseTeacher
from .clip_teacher import CLIPTeacher
from .dinov2_teacher import DINOv2Teacher
from .timm_vit_teacher import DeiTTeacher, DINOTeacher, MAETeacher, TimmViTTeacher

__all__ = ['BaseTeacher', 'CLIPTeacher', 'DINOv2Teacher', 'TimmViTTeacher', 'MAETeacher', 'DINOTeacher', 'DeiTTeacher']
