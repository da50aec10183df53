"""Feature Distillation: a fresh student regresses the whitened last-layer tokens of a frozen teacher."""
import copy
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from fdclip_mm.registry import MODELS
from ..builder import build_model
from ..teachers import BaseTeacher

TARGET_NORMS = ('ln', None)


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
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 loss: dict = dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
                 target_norm: Optional[str] = 'ln',
                 mask_ratio: float = 0.,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if target_norm not in TARGET_NORMS:
            raise ValueError(f'target_norm must be one of {TARGET_NORMS}, got {target_norm!r}')
        if not 0. <= mask_ratio < 1.:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        teacher_module = build_model(teacher)
        if not isinstance(teacher_module, BaseTeacher):
            raise TypeError(f'teacher must build a BaseTeacher, got {type(teacher_module).__name__}')
        preprocessor = copy.deepcopy(data_preprocessor) if data_preprocessor else dict(type='DistillDataPreprocessor')
        preprocessor.setdefault('_scope_', 'fdclip_mm')
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
        self._register_state_dict_hook(_drop_teacher_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    def _check_token_grids(self) -> None:
        img_size = tuple(self.student.img_size)
        student_grid = tuple(self.student.patch_resolution)
        teacher_grid = tuple(self.teacher.patch_grid(img_size))
        if student_grid != teacher_grid:
            raise ValueError(
                f'token grids differ: the student ({type(self.student).__name__}, patch '
                f'{self.student.patch_size}) makes {student_grid} patches of a {img_size} image, the teacher '
                f'({type(self.teacher).__name__}, patch {self.teacher.patch_size}) makes {teacher_grid}; '
                'use the same patch size (e.g. ViT-B/16 -> B/16, L/14 -> L/14)')

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
        target = self.extract_target(inputs['teacher'])
        if self.mask_ratio == 0:
            return dict(loss=self.loss_module(self.predict_tokens(inputs['student']), target))
        ids_keep = self.sample_kept_patches(inputs['student'])
        kept = torch.cat([torch.zeros_like(ids_keep[:, :1]), ids_keep + 1], dim=1)
        target = target.gather(1, kept[..., None].expand(-1, -1, target.shape[-1]))
        return dict(loss=self.loss_module(self.predict_tokens(inputs['student'], ids_keep), target))

    def predict(self, inputs: Dict[str, torch.Tensor], data_samples=None) -> List[BaseDataElement]:
        target = self.extract_target(inputs['teacher'])
        per_image = self.loss_module(self.predict_tokens(inputs['student']), target, per_sample=True)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(per_image.shape[0])]
        for sample, value in zip(data_samples, per_image):
            sample.set_field(value.detach(), 'distill_loss', field_type='metainfo')
        return data_samples


def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + 'teacher.')]:
        del state_dict[key]


def _ignore_missing_teacher_keys(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith('teacher.') or '.teacher.' in k)]
