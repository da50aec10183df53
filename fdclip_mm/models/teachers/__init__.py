from fdclip_mm.checkpoint import read_teacher_checkpoint
from ..image_statistics import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from .backbone_teacher import BackboneTeacher
from .families import TEACHER_FAMILIES, teacher_config

__all__ = [
    'BackboneTeacher', 'read_teacher_checkpoint', 'TEACHER_FAMILIES', 'teacher_config', 'CLIP_MEAN', 'CLIP_STD',
    'IMAGENET_MEAN', 'IMAGENET_STD'
]
