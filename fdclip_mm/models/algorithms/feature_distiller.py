"""Feature Distillation: a fresh student regresses the whitened output of one or several frozen teachers."""
import re
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from fdclip_mm.registry import MODELS
from ..builder import build_model, scoped
from ..feature_map import FeatureMap, output_layout
from ..teachers import BackboneTeacher
from .legacy_keys import rename_legacy_keys
from .student_tokens import encodes_token_subsets, refuse_unread_options, student_tokens, warn_if_crop_differs
from .teacher_branch import TeacherBranch, branch_specs, build_teacher
from .teacher_target_cache import TeacherTargetCache

DEFAULT_LOSS = dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0)


@MODELS.register_module()
class FeatureDistiller(BaseModel):
    """A student distilled from frozen teachers: per teacher, its projected tokens regress the teacher's whitened
    output (a :class:`TeacherBranch` each, keyed by name in ``branches``); the loss is their sum.

    Checkpoints hold the student and the projectors, never a teacher; checkpoints of earlier layouts load
    (:mod:`.legacy_keys`). The method and the choices behind this class: ``docs/en/advanced_guides/one_step.md``.

    Args:
        student: Student backbone config: a student with ``forward_features`` (``FDViT``, see
            :mod:`.student_tokens`) or an mmpretrain backbone giving one output.
        teacher: One teacher's config (a :class:`BackboneTeacher`), named ``'t0'``. Give ``teacher`` or
            ``teachers``.
        teachers: Several teachers, each ``dict(teacher=<config>, name='clip', loss_weight=1.0, loss=<config>,
            target_norm='ln')``; all but ``teacher`` optional (``loss`` and ``target_norm`` default to the
            arguments below, the name to ``t<index>``). The logs show ``loss_<name>`` each.
        loss: Loss config. Defaults to SmoothL1 with beta 2.
        target_norm: ``'ln'`` (whitening, the paper) or None (raw teacher tokens, for ablations).
        mask_ratio: Fraction of patch tokens a student with ``encodes_token_subsets`` does not see in training
            (0.75 = 25% input); the loss is taken on the tokens it sees.
        data_preprocessor: Defaults to :class:`DistillDataPreprocessor` with the teachers' statistics.
        init_cfg: mmengine init config.
        target_cache: A file of one teacher's tokens for fixed training views
            (:mod:`~fdclip_mm.models.algorithms.teacher_target_cache`, ``tools/cache_teacher_targets.py``),
            read in training steps instead of running the teacher, once a run has checked it.
    """

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 teachers: Optional[List[dict]] = None,
                 loss: dict = DEFAULT_LOSS,
                 target_norm: Optional[str] = 'ln',
                 mask_ratio: float = 0.,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 target_cache: Optional[str] = None) -> None:
        if not 0. <= mask_ratio < 1.:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        specs = branch_specs(teacher, teachers, loss, target_norm)
        # teachers, student, projectors: the order of the random draws since the first version
        built = [build_teacher(index, spec) for index, spec in enumerate(specs)]
        super().__init__(data_preprocessor=_preprocessor_cfg(data_preprocessor, built), init_cfg=init_cfg)
        self.student = build_model(student)
        refuse_unread_options(self.student, student)
        if mask_ratio > 0 and not encodes_token_subsets(self.student):
            raise ValueError(f'mask_ratio={mask_ratio} needs a student that encodes a subset of its tokens '
                             f'(encodes_token_subsets, e.g. FDViT); {type(self.student).__name__} sees whole '
                             'images only')
        channels = output_layout(self.student).channels
        self.branches = nn.ModuleDict()
        for spec, module in zip(specs, built):
            self.branches[spec['name']] = TeacherBranch(module, channels, spec['loss'], spec['target_norm'],
                                                        spec['loss_weight'])
        self.mask_ratio = mask_ratio
        self._checked_input_size = False
        self.target_cache = TeacherTargetCache(target_cache) if target_cache else None
        if self.target_cache is not None:
            self.target_cache.check_teachers({name: branch.teacher for name, branch in self.branches.items()})
        self._register_state_dict_hook(_drop_teacher_keys)
        self._register_load_state_dict_pre_hook(_rename_legacy_keys, with_module=True)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    @property
    def teacher(self) -> BackboneTeacher:
        """The teacher of a one-teacher distiller (a RuntimeError for several: nn.Module would hide an
        AttributeError's message)."""
        if len(self.branches) != 1:
            raise RuntimeError(f'this distiller has {len(self.branches)} teachers ({list(self.branches)}); '
                               'use .branches[name].teacher')
        return next(iter(self.branches.values())).teacher

    def teacher_identity(self) -> Dict:
        """What decides the one teacher's targets (:meth:`BackboneTeacher.identity`) with the normalisation of
        its input (``input``): what a teacher-target cache records and a run reading it must match."""
        pre = self.data_preprocessor
        stats = (pre.teacher_mean, pre.teacher_std) if getattr(pre, 'has_teacher_stats', False) else \
            (getattr(pre, 'mean', None), getattr(pre, 'std', None))
        mean, std = (None if t is None else [round(v, 6) for v in t.flatten().tolist()] for t in stats)
        return dict(
            self.teacher.identity(),
            input=dict(type=type(pre).__name__, mean=mean, std=std, to_rgb=getattr(pre, 'to_rgb', None)))

    def teacher_targets(self, inputs: Dict, data_samples=None, training: bool = False) -> List[FeatureMap]:
        """Each teacher's features of the batch (from ``target_cache`` in training steps when it is set)."""
        if training and self.target_cache is not None:
            return [self.target_cache.targets(data_samples, inputs['student'].device)]
        if len(inputs['teachers']) != len(self.branches):
            raise ValueError(f"the data preprocessor gave {len(inputs['teachers'])} teacher inputs for "
                             f'{len(self.branches)} teachers: give teacher_mean/teacher_std one entry per teacher')
        return [branch.teacher(batch) for branch, batch in zip(self.branches.values(), inputs['teachers'])]

    def sample_kept_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Random (B, K) patch indices, in raster order, that the student keeps under ``mask_ratio``."""
        grid = output_layout(self.student).grid(images.shape[-2:])
        keep = max(1, int(round(grid[0] * grid[1] * (1 - self.mask_ratio))))
        noise = torch.rand(images.shape[0], grid[0] * grid[1], device=images.device)
        return noise.argsort(dim=1)[:, :keep].sort(dim=1).values

    def extract_feat(self, inputs: Union[Dict[str, torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor]:
        """The student's tokens (B, [1 +] h*w, C) that the projectors see, as a 1-tuple: what mmpretrain's
        ``FeatureExtractor`` and ``get_model(...).extract_feat`` give.

        Args:
            inputs: The data preprocessor's output (:class:`DistillInputs`) or the student's images.
        """
        return (student_tokens(self.student, inputs['student'] if isinstance(inputs, dict) else inputs).tokens, )

    def forward(self, inputs: Dict, data_samples: Optional[List[BaseDataElement]] = None, mode: str = 'tensor'):
        """``'loss'``: dict of losses; ``'predict'``: data samples carrying ``distill_loss`` per image;
        ``'tensor'``: the student's features (a :class:`FeatureMap`)."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return student_tokens(self.student, inputs['student']).feature_map()
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def loss(self, inputs: Dict, data_samples=None) -> Dict[str, torch.Tensor]:
        """One loss per teacher: ``loss`` for one teacher, ``loss_<name>`` for each of several."""
        images = inputs['student']
        if not self._checked_input_size:
            self._checked_input_size = True
            warn_if_crop_differs(self.student, tuple(images.shape[-2:]))
        targets = self.teacher_targets(inputs, data_samples, training=True)
        student = student_tokens(self.student, images, self.sample_kept_patches(images) if self.mask_ratio else None)
        losses = [branch.loss(student, target) for branch, target in zip(self.branches.values(), targets)]
        return dict(loss=losses[0]) if len(losses) == 1 else dict(zip((f'loss_{n}' for n in self.branches), losses))

    def predict(self, inputs: Dict, data_samples=None) -> List[BaseDataElement]:
        """Data samples with ``distill_loss``: each image's loss, summed over the teachers (whole images)."""
        student = student_tokens(self.student, inputs['student'])
        per_image = sum(
            branch.loss(student, target, per_sample=True)
            for branch, target in zip(self.branches.values(), self.teacher_targets(inputs)))
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(per_image.shape[0])]
        for sample, value in zip(data_samples, per_image):
            sample.set_field(value.detach(), 'distill_loss', field_type='metainfo')
        return data_samples


def _preprocessor_cfg(cfg: Optional[dict], teachers: List[nn.Module]) -> dict:
    """The data preprocessor's config with the teachers' input statistics unless it names its own."""
    cfg = scoped(cfg or dict(type='DistillDataPreprocessor'))
    cfg.setdefault('teacher_mean', [t.mean for t in teachers])
    cfg.setdefault('teacher_std', [t.std for t in teachers])
    return cfg


#: A teacher's keys, at any prefix: ``[...]branches.<name>.teacher.*``.
TEACHER_KEY = re.compile(r'(^|\.)branches\.[^.]+\.teacher\.')


def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix) and TEACHER_KEY.match(k[len(prefix):])]:
        del state_dict[key]


def _rename_legacy_keys(module: 'FeatureDistiller', state_dict: dict, prefix: str, *args) -> None:
    rename_legacy_keys(state_dict, prefix, list(module.branches))


def _ignore_missing_teacher_keys(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not TEACHER_KEY.search(k)]
