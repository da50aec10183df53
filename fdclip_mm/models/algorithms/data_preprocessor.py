"""Gives the student and the teacher the same crop, each normalised with its own statistics."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from fdclip_mm.registry import MODELS

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _channel_stats(values: Sequence[float], name: str) -> torch.Tensor:
    if len(values) != 3:
        raise ValueError(f'{name} needs 3 channel values (RGB), got {values!r}')
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


@MODELS.register_module()
class DistillDataPreprocessor(BaseDataPreprocessor):
    """Stacks uint8 images and returns ``dict(student=..., teacher=...)`` normalised inputs.

    Statistics are on the 0-255 scale, RGB order. The distiller fills ``teacher_mean``/``teacher_std``
    from its teacher, so configs name them only to override.

    Args:
        mean: Student mean. Defaults to ImageNet's.
        std: Student std. Defaults to ImageNet's.
        teacher_mean: Teacher mean (e.g. CLIP's). None gives the teacher the student's input.
        teacher_std: Teacher std.
        to_rgb: Flip BGR inputs (mmcv/mmpretrain's default image loading) to RGB.
        non_blocking: Asynchronous host-to-device copies.
    """

    def __init__(self,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 teacher_mean: Optional[Sequence[float]] = None,
                 teacher_std: Optional[Sequence[float]] = None,
                 to_rgb: bool = True,
                 non_blocking: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        if (teacher_mean is None) != (teacher_std is None):
            raise ValueError('teacher_mean and teacher_std must be given together')
        self.to_rgb = to_rgb
        self.register_buffer('mean', _channel_stats(mean, 'mean'), persistent=False)
        self.register_buffer('std', _channel_stats(std, 'std'), persistent=False)
        self.has_teacher_stats = teacher_mean is not None
        if self.has_teacher_stats:
            self.register_buffer('teacher_mean', _channel_stats(teacher_mean, 'teacher_mean'), persistent=False)
            self.register_buffer('teacher_std', _channel_stats(teacher_std, 'teacher_std'), persistent=False)

    def _stack(self, inputs) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            return inputs
        shapes = {tuple(img.shape) for img in inputs}
        if len(shapes) != 1:
            raise ValueError(f'images of one batch must share a shape (use a fixed-size crop), got {sorted(shapes)}')
        return torch.stack(list(inputs))

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        images = self._stack(data['inputs']).float()
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'expected a batch of 3-channel images (B, 3, H, W), got {tuple(images.shape)}')
        if self.to_rgb:
            images = images.flip(1)
        student = (images - self.mean) / self.std
        teacher = (images - self.teacher_mean) / self.teacher_std if self.has_teacher_stats else student
        return dict(inputs=dict(student=student, teacher=teacher), data_samples=data.get('data_samples'))
