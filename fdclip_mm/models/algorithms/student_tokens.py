"""What the distiller calls on its student: one interface a student may offer, one adapter for the others.

The interface (offered by :class:`~fdclip_mm.models.backbones.FDViT`): a student that declares
``encodes_token_subsets = True`` has ``forward_features(images, ids_keep=None)``, which returns the tokens of its
last block after its final norm, class token first: (B, 1 + h*w, C), or (B, 1 + K, C) for the K patches of
``ids_keep`` (masked input). The distiller calls that and nothing else: the student's ``out_type`` and
``out_indices`` shape what its ``forward`` returns (fine-tuning, dense tasks) and are refused in a distillation
config (:func:`refuse_unread_options`).

The adapter, for every other backbone (mmpretrain's ``VisionTransformer`` with ``out_type='raw'`` or
``'featmap'``, ``SwinTransformer`` (V1/V2), ``ConvNeXt``, ``ResNet``): its ``forward``, whose one output (the
stage that ``out_indices`` names) is read by :func:`~fdclip_mm.models.feature_map.backbone_features`.
"""
import logging
from typing import NamedTuple, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..feature_map import FeatureMap, backbone_features, feature_tokens, output_layout, tokens_to_feature_map

#: Student config keys that the interface does not read.
UNREAD_OPTIONS = ('out_type', 'out_indices')


class StudentTokens(NamedTuple):
    """The student's output as the losses take it."""

    #: (B, [1 +] P, C): the class token first when ``has_cls``, then P patches (all h*w, or the kept ones).
    tokens: torch.Tensor
    #: The student's patch grid (h, w).
    grid: Tuple[int, int]
    has_cls: bool
    #: (B, K) indices of the patches a masked student encoded, None for whole images.
    ids_keep: Optional[torch.Tensor] = None

    def feature_map(self) -> FeatureMap:
        """The tokens of whole images as a :class:`~fdclip_mm.models.feature_map.FeatureMap`."""
        if self.ids_keep is not None:
            raise ValueError('the tokens of a masked input make no patch grid')
        return tokens_to_feature_map(self.tokens, self.grid, int(self.has_cls))


def encodes_token_subsets(student: nn.Module) -> bool:
    """Whether ``student`` offers the interface of this module (``forward_features(images, ids_keep)``)."""
    return bool(getattr(student, 'encodes_token_subsets', False))


def refuse_unread_options(student: nn.Module, student_cfg) -> None:
    """Refuses ``out_type`` / ``out_indices`` in the config of a student the distiller reads through its interface.

    Raises:
        ValueError: Naming the options, which would do nothing.
    """
    unread = [key for key in UNREAD_OPTIONS if isinstance(student_cfg, dict) and key in student_cfg]
    if unread and encodes_token_subsets(student):
        raise ValueError(f'the distiller reads {type(student).__name__} through forward_features (all tokens of its '
                         f'last block after its final norm); {unread} shape its forward only (fine-tuning, dense '
                         'tasks) and would do nothing here: remove them from the student config')


def student_tokens(student: nn.Module, images: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> StudentTokens:
    """The student's tokens of ``images`` (of the patches of ``ids_keep`` only, for a student that encodes
    subsets).

    Raises:
        ValueError: ``ids_keep`` for a student without the interface, or a token count that does not fit.
    """
    if encodes_token_subsets(student):
        tokens = student.forward_features(images, ids_keep)
        grid = output_layout(student).grid(images.shape[-2:])
        patches = grid[0] * grid[1] if ids_keep is None else ids_keep.shape[1]
        if tokens.shape[1] != 1 + patches:
            raise ValueError(f'{type(student).__name__}.forward_features gave {tokens.shape[1]} tokens, not a class '
                             f'token and {patches} patches')
        return StudentTokens(tokens, grid, True, ids_keep)
    if ids_keep is not None:
        raise ValueError(f'{type(student).__name__} sees whole images only (no encodes_token_subsets)')
    features = backbone_features(student, student(images), images.shape[-2:])
    has_cls = features.cls_token is not None
    return StudentTokens(feature_tokens(features, has_cls), features.grid, has_cls)


def warn_if_crop_differs(student: nn.Module, crop: Tuple[int, int]) -> None:
    """Warns when the training crops are not the ``img_size`` the student is built for (its position tables)."""
    img_size = getattr(student, 'img_size', None)
    if img_size is not None and crop != tuple(img_size):
        print_log(
            f'training crops are {crop} but the student is built for img_size {tuple(img_size)}, i.e. '
            "for another patch grid than it trains on; set the student's img_size to the pipeline's "
            'crop size',
            logger='current',
            level=logging.WARNING)
