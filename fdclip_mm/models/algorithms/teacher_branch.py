"""One teacher of the distiller and what turns the student's tokens into that teacher's loss."""
from typing import List, Optional

import torch
from torch import nn

from ..builder import build_model
from ..feature_map import FeatureMap, feature_tokens, resample_patches
from ..teachers import BackboneTeacher
from .student_tokens import StudentTokens

TARGET_NORMS = ('ln', None)
#: What an entry of the distiller's ``teachers`` may hold.
BRANCH_KEYS = ('teacher', 'name', 'loss_weight', 'loss', 'target_norm')


class TeacherBranch(nn.Module):
    """A frozen teacher with its target whitening, the student's projector to its width, its loss and weight.

    The teacher's output is brought to the student's patch grid (:func:`~fdclip_mm.models.feature_map.
    resample_patches`) and whitened; the student's tokens go through the projector (a 1x1 conv as an
    ``nn.Linear``); the loss compares them token by token, on the class token too when both sides have one.

    Args:
        teacher: The frozen teacher.
        student_channels: Channels of the student's tokens.
        loss: The loss config (``FeatureDistillLoss``), called as ``loss(pred, target, per_sample=...)``.
        target_norm: ``'ln'`` (LayerNorm without affine parameters, the paper) or None (raw teacher tokens).
        loss_weight: Weight of this teacher's loss (the one place a loss is weighted).
    """

    def __init__(self,
                 teacher: BackboneTeacher,
                 student_channels: int,
                 loss: dict,
                 target_norm: Optional[str] = 'ln',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if target_norm not in TARGET_NORMS:
            raise ValueError(f'target_norm must be one of {TARGET_NORMS}, got {target_norm!r}')
        if not isinstance(teacher, BackboneTeacher):
            raise TypeError(f'the teacher must be a BackboneTeacher, got {type(teacher).__name__}')
        self.teacher = teacher
        channels = teacher.embed_dims
        self.projector = nn.Linear(student_channels, channels)
        self.target_norm = nn.LayerNorm(channels, elementwise_affine=False) if target_norm == 'ln' else nn.Identity()
        self.loss_module = build_model(loss)
        self.loss_weight = float(loss_weight)

    @torch.no_grad()
    def whitened_target(self, target: FeatureMap, student: StudentTokens, with_cls: bool) -> torch.Tensor:
        """The teacher's tokens (B, [1 +] P, C_t) for the student's: on its grid, whitened, the kept patches."""
        tokens = self.target_norm(
            feature_tokens(FeatureMap(resample_patches(target.patches, student.grid), target.cls_token), with_cls))
        ids = student.ids_keep
        if ids is None:
            return tokens
        kept = torch.cat([torch.zeros_like(ids[:, :1]), ids + 1], dim=1) if with_cls else ids
        return tokens.gather(1, kept[..., None].expand(-1, -1, tokens.shape[-1]))

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """The projector on (B, T, C_s) tokens, seen as one (B*T, C_s) matrix: ``nn.Linear`` on a 3-d input returns
        a view of its 2-d product, which a sharded (FSDP2) module must not return (an in-place op on it would
        skip the module's backward hook)."""
        return self.projector(tokens.flatten(0, -2)).unflatten(0, tokens.shape[:-1])

    def loss(self, student: StudentTokens, target: FeatureMap, per_sample: bool = False) -> torch.Tensor:
        """This teacher's weighted loss on the student's tokens; one value per image with ``per_sample``."""
        with_cls = student.has_cls and target.cls_token is not None
        tokens = student.tokens if with_cls or not student.has_cls else student.tokens[:, 1:]
        target = self.whitened_target(target, student, with_cls)
        return self.loss_weight * self.loss_module(self.project(tokens), target, per_sample=per_sample)


def branch_specs(teacher: Optional[dict], teachers: Optional[List[dict]], loss: dict,
                 target_norm: Optional[str]) -> List[dict]:
    """The distiller's ``teacher`` or ``teachers`` as one dict (teacher, name, loss_weight, loss, target_norm) per
    teacher, defaults filled (``loss`` and ``target_norm`` are the distiller's), checked."""
    if (teacher is None) == (teachers is None):
        raise ValueError('give the distiller either teacher=dict(...) or teachers=[dict(teacher=...), ...]')
    entries = [dict(teacher=teacher)] if teacher is not None else list(teachers)
    if not entries:
        raise ValueError('teachers=[] names no teacher')
    for index, entry in enumerate(entries):
        if 'teacher' not in entry or set(entry) - set(BRANCH_KEYS):
            raise ValueError(f'teachers[{index}] needs a teacher config and takes name, loss_weight, loss and '
                             f'target_norm; got keys {sorted(entry)}')
    defaults = dict(loss_weight=1.0, loss=loss, target_norm=target_norm)
    specs = [{**defaults, 'name': f't{i}', **entry} for i, entry in enumerate(entries)]
    names = [spec['name'] for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f'teacher names must differ, got {names}')
    return specs


def build_teacher(index: int, spec: dict) -> nn.Module:
    """Builds one teacher; an error in it (a missing or unfitting file, ...) names the teacher as well."""
    try:
        return build_model(spec['teacher'])
    except Exception as error:  # noqa: BLE001  (re-raised, same type, with the teacher's name in front)
        try:
            named = type(error)(f"teacher {spec['name']!r} (teachers[{index}]): {error}")
        except Exception:  # noqa: BLE001  (an exception type whose constructor takes other arguments)
            raise error
        raise named from error
