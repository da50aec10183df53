"""Feature Distillation: a fresh student regresses the whitened output of one or several frozen teachers."""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from fdclip_mm.registry import MODELS
from ..builder import build_model, scoped
from ..feature_map import (FeatureMap, backbone_features, feature_tokens, output_channels, resample_patches, token_grid,
                           tokens_to_feature_map)
from ..teachers import BackboneTeacher
from .legacy_keys import rename_single_projector
from .teacher_target_cache import TeacherTargetCache

TARGET_NORMS = ('ln', None)
DEFAULT_LOSS = dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0)


@MODELS.register_module()
class FeatureDistiller(BaseModel):
    """Student + frozen teacher(s), each with its 1x1 projector and whitened-target regression loss.

    For a batch, each teacher's output after its final norm (a ViT's tokens, a Swin / ConvNeXt / ResNet stage)
    is whitened by a LayerNorm without affine parameters; the student's chosen output goes through a linear
    projector (a 1x1 conv) to that teacher's width; the loss (SmoothL1, beta 2 by default) is averaged over all
    tokens and channels. Stochastic depth lives in the student config only (asymmetric regularisation).

    Students: our ``FDViT`` (any size), mmpretrain's ``VisionTransformer`` (``out_type='raw'``),
    ``SwinTransformer`` / ``SwinTransformerV2``, ``ConvNeXt`` (``gap_before_final_norm=False``) and ``ResNet``,
    each giving one output (``out_indices`` of one stage).

    Grid alignment: when the teacher's patch grid differs from the student's (patch 14 vs 16, a 336-pixel
    teacher, stride 16 vs 32), the teacher's patch map is resampled to the student's grid before whitening
    (:func:`~fdclip_mm.models.feature_map.resample_patches`: area averages to shrink, bilinear to enlarge).
    The target, rather than the prediction, is resampled: the loss then stays one term per student token, as
    in FD with equal grids (the loss scale the SmoothL1 beta was set for), every student token gets a target
    of its own, and a coarse student is asked for the average of the teacher tokens its cell covers, the
    best it can give, instead of an upsampled map that would have to match detail it cannot represent.
    Whitening after resampling keeps each target token zero-mean and unit-variance. With equal grids nothing
    is resampled and the loss is the official code's. The class token enters the loss only when both the
    student and the teacher have one.

    Several teachers (``teachers=[...]``, as RADIO / Theia / UNIC): each has its own projector, whitening,
    loss and loss weight; the logs show one loss per teacher (``loss_<name>``) and the total is their weighted
    sum. Each teacher gets the image normalised with its own statistics.

    Masked input (appendix C; students that declare ``encodes_token_subsets = True``, i.e. ``FDViT``): with
    ``mask_ratio > 0`` the student encodes only a random subset of the patch tokens during training (MAE-style
    dropping, no mask token, class token kept, positions kept), the teacher sees the whole image, and the loss
    is taken on the kept tokens. Validation uses the full input.

    The teachers are excluded from ``state_dict()`` (and so from every checkpoint the Runner writes) and
    ignored when loading: checkpoints hold the student and the projectors only.

    Args:
        student: Student backbone config (e.g. ``dict(type='FDViT', ...)`` or
            ``dict(type='mmpretrain.SwinTransformer', ...)``).
        teacher: One teacher's config (a :class:`BackboneTeacher`); its loss and whitening are ``loss`` and
            ``target_norm``. Give either ``teacher`` or ``teachers``.
        teachers: Several teachers, each ``dict(teacher=<config>, name='clip', loss_weight=1.0,
            loss=<config>, target_norm='ln')`` (all but ``teacher`` optional: ``loss`` and ``target_norm``
            default to the arguments below, the name to ``t<index>``).
        loss: Loss config. Defaults to SmoothL1 with beta 2.
        target_norm: ``'ln'`` (whitening, the paper) or None (raw teacher tokens, for ablations).
        mask_ratio: Fraction of patch tokens the student does not see in training (0.75 = 25% input).
        data_preprocessor: Defaults to :class:`DistillDataPreprocessor` with the teachers' statistics.
        init_cfg: mmengine init config.
        target_cache: A file of teacher tokens for fixed training views (see
            :mod:`~fdclip_mm.models.algorithms.teacher_target_cache`, written by
            ``tools/cache_teacher_targets.py``). Training steps then read the targets of each image (by its
            ``img_path``) instead of running the teacher; validation still runs the teacher. Only valid
            with one teacher and the deterministic training pipeline the cache was written with: a run
            checks that before training (``fdclip_mm.TargetCacheCheckHook``) and a training step refuses an
            unchecked cache.
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
        specs = _teacher_specs(teacher, teachers, loss, target_norm)
        teacher_modules = [_build_teacher(index, spec) for index, spec in enumerate(specs)]
        for spec, module in zip(specs, teacher_modules):
            if not isinstance(module, BackboneTeacher):
                raise TypeError(f"teacher {spec['name']!r} must build a BackboneTeacher, got {type(module).__name__}")
        preprocessor = scoped(data_preprocessor or dict(type='DistillDataPreprocessor'))
        single = len(teacher_modules) == 1
        preprocessor.setdefault('teacher_mean',
                                teacher_modules[0].mean if single else [t.mean for t in teacher_modules])
        preprocessor.setdefault('teacher_std', teacher_modules[0].std if single else [t.std for t in teacher_modules])
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)

        self.student = build_model(student)
        self.student_dims = output_channels(self.student)
        self.masks_tokens = bool(getattr(self.student, 'encodes_token_subsets', False))
        if mask_ratio > 0 and not self.masks_tokens:
            raise ValueError(f'mask_ratio={mask_ratio} needs a student that encodes a subset of its tokens '
                             f'(encodes_token_subsets, e.g. FDViT); {type(self.student).__name__} sees whole '
                             'images only')
        self.teachers = nn.ModuleList(teacher_modules)
        self.teacher_names = [spec['name'] for spec in specs]
        self.loss_weights = [float(spec['loss_weight']) for spec in specs]
        self.projectors = nn.ModuleList(nn.Linear(self.student_dims, t.embed_dims) for t in teacher_modules)
        self.target_norms = nn.ModuleList(
            nn.LayerNorm(t.embed_dims, elementwise_affine=False) if spec['target_norm'] == 'ln' else nn.Identity()
            for spec, t in zip(specs, teacher_modules))
        self.losses = nn.ModuleList(build_model(spec['loss']) for spec in specs)
        self.mask_ratio = mask_ratio
        self._checked_input_size = False
        self.target_cache = TeacherTargetCache(target_cache) if target_cache else None
        self._check_target_cache()
        self._register_state_dict_hook(_drop_teacher_keys)
        self._register_load_state_dict_pre_hook(rename_single_projector)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    @property
    def teacher(self) -> BackboneTeacher:
        """The teacher of a one-teacher distiller (a RuntimeError for several: nn.Module would hide an
        AttributeError's message)."""
        if len(self.teachers) != 1:
            raise RuntimeError(f'this distiller has {len(self.teachers)} teachers ({self.teacher_names}); '
                               'use .teachers')
        return self.teachers[0]

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

    def _check_target_cache(self) -> None:
        if self.target_cache is None:
            return
        if len(self.teachers) != 1:
            raise ValueError('target_cache holds the targets of one teacher; this distiller has '
                             f'{len(self.teachers)} ({self.teacher_names})')
        channels = self.target_cache.token_shape[-1]
        if channels != self.teacher.embed_dims:
            raise ValueError(f'teacher target cache {self.target_cache.path} holds {channels}-channel tokens; '
                             f'this teacher gives {self.teacher.embed_dims}')

    def _warn_if_crop_differs(self, crop: Tuple[int, int]) -> None:
        img_size = getattr(self.student, 'img_size', None)
        if img_size is not None and crop != tuple(img_size):
            print_log(
                f'training crops are {crop} but the student is built for img_size {tuple(img_size)}, i.e. '
                "for another patch grid than it trains on; set the student's img_size to the pipeline's "
                'crop size',
                logger='current',
                level=logging.WARNING)

    def teacher_inputs(self, inputs: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """One normalised image batch per teacher (the preprocessor's ``teacher`` tensor or tuple)."""
        batches = inputs['teacher']
        batches = tuple(batches) if isinstance(batches, (tuple, list)) else (batches, )
        if len(batches) != len(self.teachers):
            raise ValueError(f'the data preprocessor gave {len(batches)} teacher inputs for '
                             f'{len(self.teachers)} teachers: give teacher_mean/teacher_std one entry per teacher')
        return batches

    def teacher_features(self,
                         inputs: Dict[str, torch.Tensor],
                         data_samples=None,
                         training: bool = False) -> List[FeatureMap]:
        """Each teacher's features of the batch (from ``target_cache`` in training steps when it is set)."""
        if training and self.target_cache is not None:
            return [self.target_cache.targets(data_samples, inputs['student'].device)]
        return [teacher(batch) for teacher, batch in zip(self.teachers, self.teacher_inputs(inputs))]

    def extract_feat(self, inputs: Union[Dict[str, torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """The student backbone's outputs (its ``forward``: ``out_indices`` and ``out_type`` apply), as mmpretrain's
        models give them to ``FeatureExtractor`` and ``get_model(...).extract_feat``.

        Args:
            inputs: The data preprocessor's output (``dict(student=..., teacher=...)``) or the student's images.
        """
        return self.student(inputs['student'] if isinstance(inputs, dict) else inputs)

    def student_features(self, images: torch.Tensor) -> FeatureMap:
        """The student's output on whole images as a :class:`FeatureMap`."""
        if self.masks_tokens:
            tokens = self.student.forward_features(images)
            return tokens_to_feature_map(tokens, token_grid(self.student, images.shape[-2:]), 1)
        return backbone_features(self.student, self.student(images), images.shape[-2:])

    def align_target(self, index: int, target: FeatureMap, grid: Tuple[int, int], with_cls: bool) -> torch.Tensor:
        """Teacher ``index``'s whitened target tokens (B, [1 +] h*w, C_t) on the student's ``grid``."""
        with torch.no_grad():
            aligned = FeatureMap(resample_patches(target.patches, grid), target.cls_token)
            return self.target_norms[index](feature_tokens(aligned, with_cls))

    def project(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher ``index``'s projector on student ``tokens`` (B, T, C_s) -> (B, T, C_t).

        The projector sees the tokens as one (B*T, C_s) matrix: ``nn.Linear`` on a 3-d input returns a view of
        its 2-d product, and a sharded (FSDP2) module that returns a view warns that an in-place op on it would
        skip its backward hook; here the view is taken outside the module.
        """
        return self.projectors[index](tokens.flatten(0, -2)).unflatten(0, tokens.shape[:-1])

    def sample_kept_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Random (B, K) patch indices, in raster order, that the student keeps under ``mask_ratio``."""
        grid = token_grid(self.student, images.shape[-2:])
        num_patches = grid[0] * grid[1]
        keep = max(1, int(round(num_patches * (1 - self.mask_ratio))))
        noise = torch.rand(images.shape[0], num_patches, device=images.device)
        return noise.argsort(dim=1)[:, :keep].sort(dim=1).values

    def forward(self,
                inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        """``'loss'``: dict of losses; ``'predict'``: data samples carrying ``distill_loss`` per image;
        ``'tensor'``: the student's features (a :class:`FeatureMap`)."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.student_features(inputs['student'])
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def loss_name(self, index: int) -> str:
        """``'loss'`` for a single teacher (as before), ``'loss_<name>'`` for each of several."""
        return 'loss' if len(self.teachers) == 1 else f'loss_{self.teacher_names[index]}'

    def loss(self, inputs: Dict[str, torch.Tensor], data_samples=None) -> Dict[str, torch.Tensor]:
        images = inputs['student']
        if not self._checked_input_size:
            self._checked_input_size = True
            self._warn_if_crop_differs(tuple(images.shape[-2:]))
        targets = self.teacher_features(inputs, data_samples, training=True)
        if self.mask_ratio > 0:
            ids_keep = self.sample_kept_patches(images)
            tokens = self.student.forward_features(images, ids_keep)  # (B, 1 + K, C): class token, kept patches
            grid, with_cls = token_grid(self.student, images.shape[-2:]), True
        else:
            ids_keep, student = None, self.student_features(images)
            grid, with_cls = student.grid, student.cls_token is not None
            tokens = feature_tokens(student, with_cls)
        return {
            self.loss_name(index): self.teacher_loss(index, tokens, with_cls, grid, target, ids_keep)
            for index, target in enumerate(targets)
        }

    def teacher_loss(self,
                     index: int,
                     tokens: torch.Tensor,
                     student_cls: bool,
                     grid: Tuple[int, int],
                     target: FeatureMap,
                     ids_keep: Optional[torch.Tensor] = None,
                     per_sample: bool = False) -> torch.Tensor:
        """Teacher ``index``'s weighted loss: its projector on the student's tokens against its whitened target.

        Args:
            index: The teacher.
            tokens: The student's tokens (B, [1 +] P, C_s), its class token first when ``student_cls``.
            student_cls: Whether ``tokens`` start with a class token.
            grid: The student's patch grid.
            target: The teacher's features.
            ids_keep: (B, K) indices of the patches a masked student encoded (``tokens`` are then its class
                token and those patches), or None for whole images.
            per_sample: One loss per image (validation) instead of their mean.
        """
        with_cls = student_cls and target.cls_token is not None  # the class token counts when both have one
        aligned = self.align_target(index, target, grid, with_cls)
        if ids_keep is not None:
            kept = torch.cat([torch.zeros_like(ids_keep[:, :1]), ids_keep + 1], dim=1) if with_cls else ids_keep
            aligned = aligned.gather(1, kept[..., None].expand(-1, -1, aligned.shape[-1]))
        pred = self.project(index, tokens if with_cls or not student_cls else tokens[:, 1:])
        return self.loss_weights[index] * self.losses[index](pred, aligned, per_sample=per_sample)

    def predict(self, inputs: Dict[str, torch.Tensor], data_samples=None) -> List[BaseDataElement]:
        """Data samples with ``distill_loss``: each image's loss, summed over the teachers with their weights."""
        student = self.student_features(inputs['student'])
        with_cls = student.cls_token is not None
        tokens = feature_tokens(student, with_cls)
        per_image = sum(
            self.teacher_loss(index, tokens, with_cls, student.grid, target, per_sample=True)
            for index, target in enumerate(self.teacher_features(inputs)))
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(per_image.shape[0])]
        for sample, value in zip(data_samples, per_image):
            sample.set_field(value.detach(), 'distill_loss', field_type='metainfo')
        return data_samples


def _teacher_specs(teacher: Optional[dict], teachers: Optional[List[dict]], loss: dict,
                   target_norm: Optional[str]) -> List[dict]:
    """One dict (teacher, name, loss_weight, loss, target_norm) per teacher, defaults filled and checked."""
    if (teacher is None) == (teachers is None):
        raise ValueError('give the distiller either teacher=dict(...) or teachers=[dict(teacher=...), ...]')
    entries = [dict(teacher=teacher)] if teacher is not None else list(teachers)
    if not entries:
        raise ValueError('teachers=[] names no teacher')
    specs = []
    for index, entry in enumerate(entries):
        unknown = set(entry) - {'teacher', 'name', 'loss_weight', 'loss', 'target_norm'}
        if 'teacher' not in entry or unknown:
            raise ValueError(f'teachers[{index}] needs a teacher config and takes name, loss_weight, loss and '
                             f'target_norm; got keys {sorted(entry)}')
        spec = {**dict(name=f't{index}', loss_weight=1.0, loss=loss, target_norm=target_norm), **entry}
        if spec['target_norm'] not in TARGET_NORMS:
            raise ValueError(f"target_norm must be one of {TARGET_NORMS}, got {spec['target_norm']!r}")
        specs.append(spec)
    names = [spec['name'] for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f'teacher names must differ, got {names}')
    return specs


def _build_teacher(index: int, spec: dict) -> nn.Module:
    """Builds one teacher; an error in it (a missing or unfitting file, ...) names the teacher as well."""
    try:
        return build_model(spec['teacher'])
    except Exception as error:  # noqa: BLE001  (re-raised, same type, with the teacher's name in front)
        try:
            named = type(error)(f"teacher {spec['name']!r} (teachers[{index}]): {error}")
        except Exception:  # noqa: BLE001  (an exception type whose constructor takes other arguments)
            raise error
        raise named from error


def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + 'teachers.')]:
        del state_dict[key]


def _ignore_missing_teacher_keys(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith('teachers.') or '.teachers.' in k)]
