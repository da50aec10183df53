"""Feature Distillation: a fresh student regresses the whitened output of one or several frozen teachers."""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.distributed as torch_dist
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from mmengine.structures import BaseDataElement
from torch import nn

from fdclip_mm.registry import MODELS
from ..builder import build_model, scoped
from ..feature_map import (FeatureMap, backbone_features, feature_tokens, output_channels, resample_patches,
                           token_grid, tokens_to_feature_map)
from ..teachers import BackboneTeacher
from .teacher_target_cache import TeacherTargetCache

TARGET_NORMS = ('ln', None)
NONFINITE_LOSS_MODES = ('raise', 'skip')
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

    Masked input (appendix C, ``FDViT`` students only): with ``mask_ratio > 0`` the student encodes only a
    random subset of the patch tokens during training (MAE-style dropping, no mask token, class token kept,
    positions kept), the teacher sees the whole image, and the loss is taken on the kept tokens. Validation
    uses the full input.

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
        nonfinite_loss: What a training step does with a NaN/inf loss (on any rank; all ranks agree):
            ``'raise'`` stops with a ``FloatingPointError`` naming the iteration; ``'skip'`` clears the
            gradients, leaves the parameters and optimizer state untouched, and counts the step in
            ``skipped_nonfinite_steps``. Under DDP, skipping needs the wrapper that calls
            :meth:`guarded_train_step` (``fdclip_mm.GuardedDistributedDataParallel``, the FD configs' default);
            mmengine's plain wrapper would update with the bad loss, so the step raises instead.
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
                 nonfinite_loss: str = 'raise',
                 target_cache: Optional[str] = None) -> None:
        if nonfinite_loss not in NONFINITE_LOSS_MODES:
            raise ValueError(f'nonfinite_loss must be one of {NONFINITE_LOSS_MODES}, got {nonfinite_loss!r}')
        if not 0. <= mask_ratio < 1.:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        specs = _teacher_specs(teacher, teachers, loss, target_norm)
        teacher_modules = [_build_teacher(index, spec) for index, spec in enumerate(specs)]
        for spec, module in zip(specs, teacher_modules):
            if not isinstance(module, BackboneTeacher):
                raise TypeError(f"teacher {spec['name']!r} must build a BackboneTeacher, got {type(module).__name__}")
        preprocessor = scoped(data_preprocessor or dict(type='DistillDataPreprocessor'))
        single = len(teacher_modules) == 1
        preprocessor.setdefault('teacher_mean', teacher_modules[0].mean if single else [t.mean for t in teacher_modules])
        preprocessor.setdefault('teacher_std', teacher_modules[0].std if single else [t.std for t in teacher_modules])
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)

        self.student = build_model(student)
        self.student_dims = output_channels(self.student)
        self.masks_tokens = callable(getattr(self.student, 'forward_features', None))
        if mask_ratio > 0 and not self.masks_tokens:
            raise ValueError(f'mask_ratio={mask_ratio} needs a student that encodes a subset of its tokens '
                             f'(FDViT); {type(self.student).__name__} sees whole images only')
        self.teachers = nn.ModuleList(teacher_modules)
        self.teacher_names = [spec['name'] for spec in specs]
        self.loss_weights = [float(spec['loss_weight']) for spec in specs]
        self.projectors = nn.ModuleList(nn.Linear(self.student_dims, t.embed_dims) for t in teacher_modules)
        self.target_norms = nn.ModuleList(
            nn.LayerNorm(t.embed_dims, elementwise_affine=False) if spec['target_norm'] == 'ln' else nn.Identity()
            for spec, t in zip(specs, teacher_modules))
        self.losses = nn.ModuleList(build_model(spec['loss']) for spec in specs)
        self.mask_ratio = mask_ratio
        self.nonfinite_loss = nonfinite_loss
        self.skipped_nonfinite_steps = 0
        self._last_loss_finite = True
        self._in_train_step = False
        self._checked_input_size = False
        self.target_cache = TeacherTargetCache(target_cache) if target_cache else None
        self._check_target_cache()
        self._register_state_dict_hook(_drop_teacher_keys)
        self._register_load_state_dict_pre_hook(_rename_single_projector)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    @property
    def teacher(self) -> BackboneTeacher:
        """The teacher of a one-teacher distiller (a RuntimeError for several: nn.Module would hide an
        AttributeError's message)."""
        if len(self.teachers) != 1:
            raise RuntimeError(f'this distiller has {len(self.teachers)} teachers ({self.teacher_names}); '
                                 'use .teachers')
        return self.teachers[0]

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
            print_log(f'training crops are {crop} but the student is built for img_size {tuple(img_size)}, i.e. '
                      "for another patch grid than it trains on; set the student's img_size to the pipeline's "
                      'crop size', logger='current', level=logging.WARNING)

    def teacher_inputs(self, inputs: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """One normalised image batch per teacher (the preprocessor's ``teacher`` tensor or tuple)."""
        batches = inputs['teacher']
        batches = tuple(batches) if isinstance(batches, (tuple, list)) else (batches, )
        if len(batches) != len(self.teachers):
            raise ValueError(f'the data preprocessor gave {len(batches)} teacher inputs for '
                             f'{len(self.teachers)} teachers: give teacher_mean/teacher_std one entry per teacher')
        return batches

    def teacher_features(self, inputs: Dict[str, torch.Tensor], data_samples=None,
                         training: bool = False) -> List[FeatureMap]:
        """Each teacher's features of the batch (from ``target_cache`` in training steps when it is set)."""
        if training and self.target_cache is not None:
            if not self.target_cache.checked:
                raise RuntimeError(
                    f'target_cache={self.target_cache.path!r}: the run\'s training pipeline and images were not '
                    'checked against the cache (a random crop or flip would be regressed onto the targets of '
                    'other views). Train with tools/train.py (its runners check it), or add '
                    "custom_hooks=[dict(type='fdclip_mm.TargetCacheCheckHook')] to the config")
            if not data_samples or any('img_path' not in s for s in data_samples):
                raise ValueError('target_cache needs the img_path of every training sample (PackInputs keeps it)')
            cached = self.target_cache.lookup([s.img_path for s in data_samples])
            return [self.target_cache.features(cached.to(inputs['student'].device))]
        return [teacher(batch) for teacher, batch in zip(self.teachers, self.teacher_inputs(inputs))]

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
            return self._masked_losses(images, targets)
        student = self.student_features(images)
        losses = {}
        for index, target in enumerate(targets):
            with_cls = student.cls_token is not None and target.cls_token is not None
            aligned = self.align_target(index, target, student.grid, with_cls)
            pred = self.project(index, feature_tokens(student, with_cls))
            losses[self.loss_name(index)] = self.loss_weights[index] * self.losses[index](pred, aligned)
        return losses

    def _masked_losses(self, images: torch.Tensor, targets: List[FeatureMap]) -> Dict[str, torch.Tensor]:
        ids_keep = self.sample_kept_patches(images)
        tokens = self.student.forward_features(images, ids_keep)  # (B, 1 + K, C): class token, kept patches
        grid = token_grid(self.student, images.shape[-2:])
        losses = {}
        for index, target in enumerate(targets):
            with_cls = target.cls_token is not None
            kept = torch.cat([torch.zeros_like(ids_keep[:, :1]), ids_keep + 1], dim=1) if with_cls else ids_keep
            aligned = self.align_target(index, target, grid, with_cls)
            aligned = aligned.gather(1, kept[..., None].expand(-1, -1, aligned.shape[-1]))
            pred = self.project(index, tokens if with_cls else tokens[:, 1:])
            losses[self.loss_name(index)] = self.loss_weights[index] * self.losses[index](pred, aligned)
        return losses

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        """mmengine's training step with a guard against a non-finite loss (see ``nonfinite_loss``)."""
        return self.guarded_train_step(data, optim_wrapper, self)

    def guarded_train_step(self, data: Union[dict, tuple, list], optim_wrapper: OptimWrapper,
                           forward_module: nn.Module) -> Dict[str, torch.Tensor]:
        """The training step; ``forward_module`` is this model or the DDP wrapper around it.

        A skipped step under DDP (every rank skips: :meth:`parse_losses` all-reduces the verdict) still runs
        a backward of zero through the trainable parameters, which completes the gradient reduction that
        DDP's forward set up; the zero gradients are then cleared and no parameter or optimizer state moves.
        """
        self._in_train_step = True
        try:
            with optim_wrapper.optim_context(forward_module):
                data = self.data_preprocessor(data, True)
                losses = forward_module._run_forward(data, mode='loss')
            parsed_loss, log_vars = self.parse_losses(losses)
        finally:
            self._in_train_step = False
        if self._last_loss_finite:
            optim_wrapper.update_params(parsed_loss)
            return log_vars
        if forward_module is not self:
            sum(p.sum() for p in self.parameters() if p.requires_grad).mul(0.).backward()
        optim_wrapper.zero_grad()
        self.skipped_nonfinite_steps += 1
        print_log(f'skipped the update of {_iteration_name()}: non-finite loss {parsed_loss.item()} '
                  f'({self.skipped_nonfinite_steps} step(s) skipped so far)',
                  logger='current', level=logging.WARNING)
        return {}  # nothing to log: a NaN would poison the smoothed loss in the logs

    def parse_losses(self, losses: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """mmengine's loss parsing, then the non-finite check; every rank takes part in one all-reduce."""
        loss, log_vars = super().parse_losses(losses)
        finite = torch.isfinite(loss.detach()).all().to(torch.int32).reshape(1)
        if torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1:
            torch_dist.all_reduce(finite, op=torch_dist.ReduceOp.MIN)  # all ranks raise or skip together
        self._last_loss_finite = bool(finite.item())
        if self._last_loss_finite:
            return loss, log_vars
        if self.nonfinite_loss == 'raise':
            raise FloatingPointError(f'non-finite loss at {_iteration_name()} (this rank: {loss.item()}); '
                                     "stopping. Set model.nonfinite_loss='skip' to skip such steps instead.")
        if not self._in_train_step:
            raise FloatingPointError(
                f'non-finite loss at {_iteration_name()}: nonfinite_loss=\'skip\' under DDP needs '
                "model_wrapper_cfg=dict(type='fdclip_mm.GuardedDistributedDataParallel') (this wrapper would "
                'update with the bad loss); stopping')
        return loss, log_vars

    def predict(self, inputs: Dict[str, torch.Tensor], data_samples=None) -> List[BaseDataElement]:
        """Data samples with ``distill_loss``: each image's loss, summed over the teachers with their weights."""
        student = self.student_features(inputs['student'])
        per_image = 0.
        for index, target in enumerate(self.teacher_features(inputs)):
            with_cls = student.cls_token is not None and target.cls_token is not None
            aligned = self.align_target(index, target, student.grid, with_cls)
            pred = self.project(index, feature_tokens(student, with_cls))
            per_image = per_image + self.loss_weights[index] * self.losses[index](pred, aligned, per_sample=True)
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


def _iteration_name() -> str:
    """The current training iteration as the logs count it (1-based), from mmengine's message hub."""
    index = MessageHub.get_current_instance().get_info('iter')
    if index is None:
        return 'an unknown iteration'
    return f'training iteration {index + 1} (runner.iter {index})'


def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + 'teachers.')]:
        del state_dict[key]


def _rename_single_projector(state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints of one-teacher distillers from before ``teachers=[...]`` name their projector ``projector``."""
    for key in [k for k in state_dict if k.startswith(prefix + 'projector.')]:
        state_dict[prefix + 'projectors.0.' + key[len(prefix + 'projector.'):]] = state_dict.pop(key)


def _ignore_missing_teacher_keys(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith('teachers.') or '.teachers.' in k)]
