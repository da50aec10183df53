"""Gives the student and each teacher the same crop, each normalised with its own statistics."""
from typing import Optional, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor

from fdclip_mm.datasets.device_decode import decode_resized_crops, is_encoded_crop
from fdclip_mm.registry import MODELS
from ..image_statistics import IMAGENET_MEAN, IMAGENET_STD


def _is_nested(values) -> bool:
    return len(values) > 0 and isinstance(values[0], (list, tuple))


def _channel_stats(values: Sequence[float], name: str) -> torch.Tensor:
    if len(values) != 3:
        raise ValueError(f'{name} needs 3 channel values (RGB), got {values!r}')
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


class DistillInputs(dict):
    """``dict(student=<batch>, teachers=(<batch>, ...))``, the normalised batches (one per teacher), that also
    answers ``shape`` as the student's batch does: mmpretrain's ``FeatureExtractor`` (and other callers written for
    one image tensor) size their output by ``inputs.shape[0]``."""

    @property
    def shape(self) -> torch.Size:
        return self['student'].shape


@MODELS.register_module()
class DistillDataPreprocessor(BaseDataPreprocessor):
    """Stacks uint8 images and returns them normalised for the student and for each teacher (:class:`DistillInputs`).

    Inputs are images (stacked, or a list), or, from ``DecodeRandomResizedCrop(decode_on='device')``, a list
    holding (file bytes, crop) pairs: those are decoded as one batch on this module's device (nvJPEG on a GPU),
    cropped, resized and flipped there (:func:`~fdclip_mm.datasets.device_decode.decode_resized_crops`), and
    join the images of the files that the workers decoded (not JPEGs). Statistics are on the 0-255 scale, RGB
    order. The distiller fills ``teacher_mean``/``teacher_std`` from its teachers, so configs name them only to
    override. ``teachers`` is a tuple with one batch per teacher, whatever their number.

    Args:
        mean: Student mean. Defaults to ImageNet's.
        std: Student std. Defaults to ImageNet's.
        teacher_mean: Teacher mean (e.g. CLIP's, an RGB triple), or one triple per teacher. None gives the teacher
            the student's input.
        teacher_std: Teacher std, or one triple per teacher.
        to_rgb: Flip BGR inputs (mmcv/mmpretrain's default image loading) to RGB.
        non_blocking: Asynchronous host-to-device copies.
    """

    def __init__(self,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 teacher_mean: Optional[Union[Sequence[float], Sequence[Sequence[float]]]] = None,
                 teacher_std: Optional[Union[Sequence[float], Sequence[Sequence[float]]]] = None,
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
            means = list(teacher_mean) if _is_nested(teacher_mean) else [teacher_mean]
            stds = list(teacher_std) if _is_nested(teacher_std) else [teacher_std]
            if _is_nested(teacher_mean) != _is_nested(teacher_std) or len(means) != len(stds):
                raise ValueError(f'teacher_mean and teacher_std must name the same number of teachers, got '
                                 f'{teacher_mean!r} and {teacher_std!r}')
            self.register_buffer(
                'teacher_mean', torch.cat([_channel_stats(m, 'teacher_mean') for m in means]), persistent=False)
            self.register_buffer(
                'teacher_std', torch.cat([_channel_stats(v, 'teacher_std') for v in stds]), persistent=False)

    def _stack(self, inputs) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            return inputs
        shapes = {tuple(img.shape) for img in inputs}
        if len(shapes) != 1:
            raise ValueError(f'images of one batch must share a shape (use a fixed-size crop), got {sorted(shapes)}')
        return torch.stack(list(inputs))

    def _decoded_batch(self, inputs: list, data_samples) -> torch.Tensor:
        """RGB float batch of a list with (file bytes, crop) pairs, decoded on this module's device."""
        encoded = [i for i, sample in enumerate(inputs) if is_encoded_crop(sample)]
        names = [getattr(data_samples[i], 'img_path', f'sample {i} of the batch')
                 for i in encoded] if data_samples else None
        images = list(inputs)
        for i, image in zip(encoded, decode_resized_crops([inputs[i] for i in encoded], self.device, names)):
            images[i] = image
        for i in sorted(set(range(len(images))) - set(encoded)):  # pixels of files a worker decoded (not JPEGs)
            image = images[i].to(self.device, non_blocking=self._non_blocking).float()
            images[i] = image.flip(0) if self.to_rgb else image
        return self._stack(images)

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        encoded = isinstance(inputs, (list, tuple)) and any(is_encoded_crop(sample) for sample in inputs)
        if encoded:  # the bytes stay on the host: the decoder copies them to its device
            data = self.cast_data({key: value for key, value in data.items() if key != 'inputs'})
            images = self._decoded_batch(inputs, data.get('data_samples'))
        else:
            data = self.cast_data(data)
            images = self._stack(data['inputs']).float()
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'expected a batch of 3-channel images (B, 3, H, W), got {tuple(images.shape)}')
        if self.to_rgb and not encoded:
            images = images.flip(1)
        student = (images - self.mean) / self.std
        teachers = tuple((images - mean[None]) / std[None] for mean, std in zip(self.teacher_mean, self.teacher_std)) \
            if self.has_teacher_stats else (student, )
        return dict(inputs=DistillInputs(student=student, teachers=teachers), data_samples=data.get('data_samples'))
