"""The teacher families as data: backbone defaults, checkpoint reader and input statistics of each.

The one place these facts live: ``BackboneTeacher(family=...)`` fills its reader, statistics and backbone
defaults from :data:`TEACHER_FAMILIES` (the configs name the family and give only what differs: arch, patch,
size), and :func:`teacher_config` writes such a config from code, for tools, benchmarks and tests.
"""
import copy
from typing import Optional, Sequence, Union

from ..image_statistics import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

_VIT = dict(type='mmpretrain.VisionTransformer', final_norm=True, out_type='raw')

#: family -> reader, statistics and backbone config (architecture fields completed by :func:`teacher_config`).
TEACHER_FAMILIES = {
    'clip':
    dict(
        reader='clip',
        mean=CLIP_MEAN,
        std=CLIP_STD,
        backbone=dict(
            _VIT,
            pre_norm=True,
            norm_cfg=dict(type='LN', eps=1e-5),
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))),
    'open_clip':
    dict(
        reader='clip',
        mean=CLIP_MEAN,
        std=CLIP_STD,
        backbone=dict(_VIT, pre_norm=True, norm_cfg=dict(type='LN', eps=1e-5))),
    'timm_vit':
    dict(reader='timm_vit', mean=IMAGENET_MEAN, std=IMAGENET_STD, backbone=dict(_VIT)),
    'dinov2':
    dict(reader='dinov2', mean=IMAGENET_MEAN, std=IMAGENET_STD, backbone=dict(_VIT, layer_scale_init_value=1e-5)),
    'esvit_swin':
    dict(
        reader='esvit_swin',
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        backbone=dict(type='mmpretrain.SwinTransformer', drop_path_rate=0., out_indices=(3, ))),
}


def teacher_config(family: str,
                   checkpoint: str,
                   arch: Union[str, dict],
                   patch_size: Optional[int] = None,
                   img_size: Optional[Union[int, Sequence[int]]] = None,
                   dtype: Optional[str] = 'auto',
                   **backbone_options) -> dict:
    """A ``BackboneTeacher`` config of ``family`` (a key of :data:`TEACHER_FAMILIES`).

    Args:
        family: ``'clip'`` (OpenAI, QuickGELU), ``'open_clip'`` (GELU), ``'timm_vit'`` (MAE / DINO / DeiT),
            ``'dinov2'`` or ``'esvit_swin'``.
        checkpoint: The teacher's file.
        arch: The backbone's ``arch`` (a name of mmpretrain's zoo or a dict).
        patch_size: A ViT's patch size (Swin: its patch embedding's).
        img_size: The teacher's input size.
        dtype: See :class:`BackboneTeacher`.
        **backbone_options: Further backbone arguments (e.g. ``window_size``).
    """
    if family not in TEACHER_FAMILIES:
        raise KeyError(f'unknown teacher family {family!r}; choose one of {sorted(TEACHER_FAMILIES)}')
    backbone = dict(arch=arch, **backbone_options)
    if patch_size is not None:
        backbone['patch_size'] = patch_size
    return dict(
        type='fdclip_mm.BackboneTeacher',
        family=family,
        backbone=backbone,
        checkpoint=checkpoint,
        img_size=img_size,
        dtype=dtype)


def family_defaults(family: Optional[str]) -> dict:
    """``reader``, ``mean``, ``std`` and ``backbone`` defaults of ``family`` (a copy; empty for None).

    Raises:
        KeyError: An unknown family, with the known ones.
    """
    if family is None:
        return {}
    if family not in TEACHER_FAMILIES:
        raise KeyError(f'unknown teacher family {family!r}; choose one of {sorted(TEACHER_FAMILIES)}')
    return copy.deepcopy(TEACHER_FAMILIES[family])
