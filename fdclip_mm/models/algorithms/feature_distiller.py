"""Feature Distillation: a fresh student regresses the whitened last-layer tokens of a frozen teacher."""
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
from ..teachers import BaseTeacher
from .teacher_target_cache import TeacherTargetCache

TARGET_NORMS = ('ln', None)
NONFINITE_LOSS_MODES = ('raise', 'skip')


@MODELS.register_module()
class FeatureDistiller(BaseModel):
    """Student + frozen teacher + 1x1 projector + whitened-target regression loss.

    For a batch, the teacher's tokens after its final norm (CLS included) are whitened by a LayerNorm
    without affine parameters; the student's tokens after its final norm go through a linear projector
    (a 1x1 conv) to the teacher's width; the loss (SmoothL1, beta 2 by default) is averaged over all
    tokens and channels. Stochastic depth lives in the student config only (asymmetric regularisation).

    Masked input (appendix C): with ``mask_ratio > 0`` the student encodes only a random subset of the patch
    tokens during training (MAE-style dropping, no mask token, class token kept, positions kept), the teacher
    sees the whole image, and the loss is taken on the kept tokens. Validation uses the full input.

    The teacher is excluded from ``state_dict()`` (and so from every checkpoint the Runner writes) and
    ignored when loading: checkpoints hold the student and the projector only.

    Args:
        student: Student backbone config (e.g. ``dict(type='FDViT', ...)``); needs ``forward_features``.
        teacher: Teacher config (a :class:`BaseTeacher`).
        loss: Loss config. Defaults to SmoothL1 with beta 2.
        target_norm: ``'ln'`` (whitening, the paper) or None (raw teacher tokens, for ablations).
        mask_ratio: Fraction of patch tokens the student does not see in training (0.75 = 25% input).
        data_preprocessor: Defaults to :class:`DistillDataPreprocessor` with the teacher's statistics.
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
            with a deterministic training pipeline, the one the cache was written with.
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 loss: dict = dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
                 target_norm: Optional[str] = 'ln',
                 mask_ratio: float = 0.,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 nonfinite_loss: str = 'raise',
                 target_cache: Optional[str] = None) -> None:
        if nonfinite_loss not in NONFINITE_LOSS_MODES:
            raise ValueError(f'nonfinite_loss must be one of {NONFINITE_LOSS_MODES}, got {nonfinite_loss!r}')
        if target_norm not in TARGET_NORMS:
            raise ValueError(f'target_norm must be one of {TARGET_NORMS}, got {target_norm!r}')
        if not 0. <= mask_ratio < 1.:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        teacher_module = build_model(teacher)
        if not isinstance(teacher_module, BaseTeacher):
            raise TypeError(f'teacher must build a BaseTeacher, got {type(teacher_module).__name__}')
        preprocessor = scoped(data_preprocessor or dict(type='DistillDataPreprocessor'))
        preprocessor.setdefault('teacher_mean', teacher_module.mean)
        preprocessor.setdefault('teacher_std', teacher_module.std)
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)

        self.student = build_model(student)
        self.teacher = teacher_module
        self._check_token_grids()
        self.projector = nn.Linear(self.student.embed_dims, self.teacher.embed_dims)
        self.target_norm = nn.LayerNorm(self.teacher.embed_dims, elementwise_affine=False) \
            if target_norm == 'ln' else nn.Identity()
        self.loss_module = build_model(loss)
        self.mask_ratio = mask_ratio
        self.nonfinite_loss = nonfinite_loss
        self.skipped_nonfinite_steps = 0
        self._last_loss_finite = True
        self._in_train_step = False
        self._checked_input_size = False
        self.target_cache = TeacherTargetCache(target_cache) if target_cache else None
        self._check_target_cache()
        self._register_state_dict_hook(_drop_teacher_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    def _check_token_grids(self) -> None:
        img_size = tuple(self.student.img_size)
        teacher_size = getattr(self.teacher, 'img_size', None)
        if teacher_size is not None and tuple(teacher_size) != img_size:
            raise ValueError(
                f'the teacher ({type(self.teacher).__name__}) is built for {tuple(teacher_size)} inputs and the '
                f'student ({type(self.student).__name__}) for {img_size}: both see the same crop, so set the '
                "teacher's img_size to the student's (the training pipeline's crop size)")
        student_grid = tuple(self.student.patch_resolution)
        teacher_grid = tuple(self.teacher.patch_grid(img_size))
        if student_grid != teacher_grid:
            raise ValueError(
                f'token grids differ: the student ({type(self.student).__name__}, patch '
                f'{self.student.patch_size}) makes {student_grid} patches of a {img_size} image, the teacher '
                f'({type(self.teacher).__name__}, patch {self.teacher.patch_size}) makes {teacher_grid}; '
                'use the same patch size (e.g. ViT-B/16 -> B/16, L/14 -> L/14)')

    def _check_target_cache(self) -> None:
        if self.target_cache is None:
            return
        grid = self.student.patch_resolution
        expected = (1 + grid[0] * grid[1], self.teacher.embed_dims)
        if self.target_cache.token_shape != expected:
            raise ValueError(f'teacher target cache {self.target_cache.path} holds tokens of shape '
                             f'{self.target_cache.token_shape} per image; this student and teacher need '
                             f'{expected}')

    def _warn_if_crop_differs(self, crop: Tuple[int, int]) -> None:
        if crop != tuple(self.student.img_size):
            print_log(f'training crops are {crop} but the student is built for img_size '
                      f'{tuple(self.student.img_size)}, i.e. for another patch grid than it trains on; set the '
                      "student's (and the teacher's) img_size to the pipeline's crop size",
                      logger='current', level=logging.WARNING)

    def training_target(self, inputs: Dict[str, torch.Tensor], data_samples) -> torch.Tensor:
        """Whitened targets of a training batch: from the teacher, or from ``target_cache`` by image path."""
        if self.target_cache is None:
            return self.extract_target(inputs['teacher'])
        if not data_samples or any('img_path' not in s for s in data_samples):
            raise ValueError('target_cache needs the img_path of every training sample (PackInputs keeps it)')
        cached = self.target_cache.lookup([s.img_path for s in data_samples])
        return self.target_norm(cached.to(inputs['student'].device))

    def extract_target(self, teacher_inputs: torch.Tensor) -> torch.Tensor:
        """Whitened teacher tokens (B, 1+N, C_t); no graph is kept."""
        with torch.no_grad():
            return self.target_norm(self.teacher(teacher_inputs))

    def predict_tokens(self, student_inputs: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Student tokens projected to the teacher's width: (B, 1+N, C_t), or (B, 1+K, C_t) for kept ids."""
        return self.projector(self.student.forward_features(student_inputs, ids_keep))

    def sample_kept_patches(self, images: torch.Tensor) -> torch.Tensor:
        """Random (B, K) patch indices, in raster order, that the student keeps under ``mask_ratio``."""
        patch = self.student.patch_size
        num_patches = (images.shape[-2] // patch) * (images.shape[-1] // patch)
        keep = max(1, int(round(num_patches * (1 - self.mask_ratio))))
        noise = torch.rand(images.shape[0], num_patches, device=images.device)
        return noise.argsort(dim=1)[:, :keep].sort(dim=1).values

    def forward(self,
                inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        """``'loss'``: dict of losses; ``'predict'``: data samples carrying ``distill_loss`` per image;
        ``'tensor'``: the student's tokens."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.student.forward_features(inputs['student'])
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def loss(self, inputs: Dict[str, torch.Tensor], data_samples=None) -> Dict[str, torch.Tensor]:
        if not self._checked_input_size:
            self._checked_input_size = True
            self._warn_if_crop_differs(tuple(inputs['student'].shape[-2:]))
        target = self.training_target(inputs, data_samples)
        if self.mask_ratio == 0:
            return dict(loss=self.loss_module(self.predict_tokens(inputs['student']), target))
        ids_keep = self.sample_kept_patches(inputs['student'])
        kept = torch.cat([torch.zeros_like(ids_keep[:, :1]), ids_keep + 1], dim=1)
        target = target.gather(1, kept[..., None].expand(-1, -1, target.shape[-1]))
        return dict(loss=self.loss_module(self.predict_tokens(inputs['student'], ids_keep), target))

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
        target = self.extract_target(inputs['teacher'])
        per_image = self.loss_module(self.predict_tokens(inputs['student']), target, per_sample=True)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(per_image.shape[0])]
        for sample, value in zip(data_samples, per_image):
            sample.set_field(value.detach(), 'distill_loss', field_type='metainfo')
        return data_samples


def _iteration_name() -> str:
    """The current training iteration as the logs count it (1-based), from mmengine's message hub."""
    index = MessageHub.get_current_instance().get_info('iter')
    if index is None:
        return 'an unknown iteration'
    return f'training iteration {index + 1} (runner.iter {index})'


def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + 'teacher.')]:
        del state_dict[key]


def _ignore_missing_teacher_keys(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith('teacher.') or '.teacher.' in k)]
