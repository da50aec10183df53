"""The authors' released FD models -> our checkpoints: which model a file holds, and the file our tools take.

The official code (SwinTransformer/Feature-Distillation, commit 2115145) released ten files: a distilled and a
fine-tuned model for each of CLIP ViT-B/16, DINO ViT-B/16, DeiT ViT-B/16, CLIP ViT-L/14 (students ViT-B/16,
ViT-L/14) and EsViT Swin-B (student SwinV2-B, window 14). :func:`identify_official_fd` tells them apart by their
keys and shapes (and the config, when the file holds it); :func:`convert_official_fd` writes

- for a distilled file, the student backbone exactly as ``tools/model_converters/fd_to_backbone.py`` writes it from
  a distillation run of ours (``{'state_dict': <student>, 'meta': ...}``, the shared RPB kept shared), so
  ``fd_to_classifier.py``, the fine-tuning configs and the dense-task configs take it unchanged;
- for a fine-tuned file, an mmpretrain ``ImageClassifier`` checkpoint (``backbone.*`` and ``head.fc.*``) for the
  config :data:`FINETUNE_CONFIGS` names, which ``tools/test.py`` evaluates.
"""
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from fdclip_mm.checkpoint import OfficialFDCheckpoint, read_official_fd_checkpoint
from .fd_to_backbone import save_state_dict
from .official_fd_keys import OfficialKeyError, official_swinv2_to_mmpretrain, official_vit_to_fdvit, split_head
from .to_classifier import BACKBONE_PREFIX

Tensors = Dict[str, torch.Tensor]

DISTILLED, FINE_TUNED = 'distilled', 'fine-tuned'
STUDENT_PREFIX, PROJECTOR_PREFIX, TEACHER_PREFIX = 'encoder.', 'decoder.0.', 'feature_model.'
#: The official configs' ``DEV.PRED_FEAT`` -> the teacher it names.
PRED_FEAT_TEACHERS = {
    'CLIP_400M': 'CLIP ViT-B/16',
    'CLIP_400M_Large': 'CLIP ViT-L/14',
    'DINO': 'DINO ViT-B/16',
    'DEIT': 'DeiT ViT-B/16',
    'ESVIT': 'EsViT Swin-B',
}
#: The official configs' ``TAG`` (``fd_pretrain__<teacher>__...`` / ``fd_finetune__<teacher>__...``) -> the teacher.
TAG_TEACHERS = {
    'clip_vit_base': 'CLIP ViT-B/16',
    'clip_vit_large': 'CLIP ViT-L/14',
    'dino_vit_base': 'DINO ViT-B/16',
    'deit_vit_base': 'DeiT ViT-B/16',
    'esvit_swin_base': 'EsViT Swin-B',
}
#: Architectures of the released students, by (kind, width, depth(s), patch).
NAMED_ARCHS = {
    ('vit', 768, (12, ), 16): 'ViT-B/16',
    ('vit', 1024, (24, ), 14): 'ViT-L/14',
    ('swinv2', 128, (2, 2, 18, 2), 4): 'SwinV2-B',
}
#: Our configs for each released model: (distillation config, fine-tuning / evaluation config), by (arch, teacher).
CONFIGS = {
    ('ViT-B/16', 'CLIP ViT-B/16'): ('configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py',
                                    'configs/finetune_in1k/fd-clip-vit-b16_16xb128-100e_in1k.py'),
    ('ViT-B/16', 'DINO ViT-B/16'): ('configs/fd/fd_dino-vit-b16_fdvit-b16-dp0.3_16xb128-300e_in1k.py',
                                    'configs/finetune_in1k/fd-dino-vit-b16_16xb128-100e_in1k.py'),
    ('ViT-B/16', 'DeiT ViT-B/16'): ('configs/fd/fd_deit-vit-b16_fdvit-b16-dp0.3_16xb128-300e_in1k.py',
                                    'configs/finetune_in1k/fd-deit-vit-b16_16xb128-100e_in1k.py'),
    ('ViT-L/14', 'CLIP ViT-L/14'): ('configs/fd/fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k.py',
                                    'configs/finetune_in1k/fd-clip-vit-l14_16xb128-50e_in1k.py'),
    ('SwinV2-B', 'EsViT Swin-B'): ('configs/fd/fd_esvit-swin-b_swinv2-b-w14-dp0.3_16xb128-300e_in1k.py',
                                   'configs/finetune_in1k/fd-esvit-swinv2-b-w14_16xb64-100e_in1k.py'),
}
EXPECTED = ('a distilled file (encoder.* student, decoder.0.* 1x1 Conv1d projector, optionally feature_model.* '
            'teacher) or a fine-tuned one (the official VisionTransformer: blocks.N.*, fc_norm.*, head.*; or '
            'SwinTransformerV2: layers.N.blocks.M.*, norm.*, head.*), as written by the official FD code')


@dataclass(frozen=True)
class OfficialFDModel:
    """What a released file holds.

    Attributes:
        stage: ``'distilled'`` or ``'fine-tuned'``.
        kind: ``'vit'`` or ``'swinv2'``.
        arch: A released architecture's name (``'ViT-B/16'``, ``'ViT-L/14'``, ``'SwinV2-B'``) or a description.
        teacher: The teacher, where the file shows it (its config or its teacher weights), else None.
        img_size: The input size the model was trained at (None where the file does not show it).
        num_classes: Classifier outputs (fine-tuned files), else None.
        teacher_channels: Width of the distillation targets (distilled files), else None.
    """
    stage: str
    kind: str
    arch: str
    teacher: Optional[str]
    img_size: Optional[int]
    num_classes: Optional[int] = None
    teacher_channels: Optional[int] = None

    def describe(self) -> str:
        """One line: stage, architecture, teacher, size."""
        teacher = self.teacher or 'teacher not shown by the file'
        extra = f', {self.num_classes} classes' if self.num_classes else ''
        size = f'{self.img_size} px' if self.img_size else 'an input size the file does not show'
        return f'{self.stage} FD {self.arch} (teacher: {teacher}) at {size}{extra}'

    def configs(self) -> Optional[Tuple[str, str]]:
        """(distillation config, fine-tuning / evaluation config) of ours for this model, if it is a released one."""
        return CONFIGS.get((self.arch, self.teacher))

    def candidate_configs(self) -> Dict[str, Tuple[str, str]]:
        """Teacher -> our configs, for every released model of this architecture (where the file does not show
        the teacher, e.g. DINO or DeiT)."""
        return {teacher: configs for (arch, teacher), configs in CONFIGS.items() if arch == self.arch}


def _block_indices(state: Tensors, pattern: str) -> Dict[int, int]:
    """For ``pattern`` with one or two groups: stage -> blocks (two groups) or {0: blocks} (one group)."""
    counts: Dict[int, set] = {}
    for key in state:
        match = re.match(pattern, key)
        if match:
            groups = [int(g) for g in match.groups()]
            stage, block = (groups if len(groups) == 2 else [0] + groups)
            counts.setdefault(stage, set()).add(block)
    return {stage: len(blocks) for stage, blocks in sorted(counts.items())}


def _vit_shape(state: Tensors) -> Tuple[int, Tuple[int, ...], int, int]:
    """(width, (depth, ), patch, img_size) of an official ViT state dict."""
    patch = state['patch_embed.proj.weight'].shape[-1]
    width = state['cls_token'].shape[-1]
    depth = _block_indices(state, r'^blocks\.(\d+)\.')[0]
    table = state.get('rel_pos_bias.relative_position_bias_table',
                      state.get('blocks.0.attn.relative_position_bias_table'))
    if table is not None:
        side = (round((table.shape[0] - 3)**0.5) + 1) // 2
    else:
        side = round((state['pos_embed'].shape[1] - 1)**0.5)
    return width, (depth, ), patch, side * patch


def _swin_shape(state: Tensors) -> Tuple[int, Tuple[int, ...], int, Optional[int]]:
    """(width, depths, patch, img_size) of an official SwinV2 state dict.

    The input size shows in the buffers only: the shifted block's attention mask counts the first stage's windows;
    without one, a last stage whose window shrank to its map (7 x 7 at 224 px) gives it; else it is unknown.
    """
    patch = state['patch_embed.proj.weight'].shape[-1]
    width = state['patch_embed.proj.weight'].shape[0]
    depths = tuple(_block_indices(state, r'^layers\.(\d+)\.blocks\.(\d+)\.').values())

    def window(stage: int) -> int:
        return round(state[f'layers.{stage}.blocks.0.attn.relative_position_index'].shape[0]**0.5)

    mask = state.get('layers.0.blocks.1.attn_mask')  # (windows, W*W, W*W)
    last = len(depths) - 1
    if mask is not None:
        side = round(mask.shape[0]**0.5) * window(0)
    elif window(last) < window(0):
        side = window(last) * 2**last
    else:
        return width, depths, patch, None
    return width, depths, patch, side * patch


def _arch_name(kind: str, width: int, depths: Tuple[int, ...], patch: int) -> str:
    name = NAMED_ARCHS.get((kind, width, depths, patch))
    if name:
        return name
    if kind == 'vit':
        return f'ViT ({depths[0]} blocks of width {width}, patch {patch})'
    return f'SwinV2 (depths {list(depths)}, width {width}, patch {patch})'


def _teacher_from_weights(state: Tensors) -> Optional[str]:
    """The teacher family its weights show (``feature_model.*``), if the file holds them."""
    teacher = {k[len(TEACHER_PREFIX):]: v for k, v in state.items() if k.startswith(TEACHER_PREFIX)}
    if 'visual.conv1.weight' in teacher:
        conv = teacher['visual.conv1.weight']
        size = {768: 'B', 1024: 'L'}.get(conv.shape[0], f'{conv.shape[0]}-wide')
        return f'CLIP ViT-{size}/{conv.shape[-1]}'
    if any(k.startswith('layers.') for k in teacher):
        return 'EsViT Swin-B' if teacher.get('patch_embed.proj.weight', torch.empty(0)).shape[:1] == (128, ) \
            else 'a Swin (EsViT)'
    if 'cls_token' in teacher:
        return 'DINO or DeiT ViT-B/16 (the weights do not say which)'
    return None


def _teacher_from_config(checkpoint: OfficialFDCheckpoint) -> Optional[str]:
    """The teacher the file's official config names: ``DEV.PRED_FEAT`` (distillation) or its ``TAG``."""
    teacher = PRED_FEAT_TEACHERS.get(checkpoint.config_value('DEV', 'PRED_FEAT'))
    tag = checkpoint.config_value('TAG')
    if teacher is None and isinstance(tag, str) and tag.count('__') >= 2:
        teacher = TAG_TEACHERS.get(tag.split('__')[1])
    return teacher


def identify_official_fd(checkpoint: OfficialFDCheckpoint) -> OfficialFDModel:
    """Which released model ``checkpoint`` holds, from its keys and shapes (and its config, if any).

    Raises:
        OfficialKeyError: The file is not a model of the official FD code; the message says what was found.
    """
    state, path = checkpoint.model, checkpoint.path
    distilled = any(k.startswith(STUDENT_PREFIX) for k in state)
    model = {k[len(STUDENT_PREFIX):]: v for k, v in state.items() if k.startswith(STUDENT_PREFIX)} if distilled \
        else state
    if 'blocks.0.attn.qkv.weight' in model and 'cls_token' in model:
        kind, shape = 'vit', _vit_shape(model)
    elif 'layers.0.blocks.0.attn.qkv.weight' in model and 'patch_embed.proj.weight' in model:
        kind, shape = 'swinv2', _swin_shape(model)
    else:
        prefixes = sorted({k.split('.')[0] + '.' for k in state})[:8]
        raise OfficialKeyError(f'{path} is not a model of the official FD code: found keys under {prefixes} '
                               f'(e.g. {sorted(state)[:3]}); expected {EXPECTED}')
    if distilled and f'{PROJECTOR_PREFIX}weight' not in state:
        raise OfficialKeyError(f'{path} has a student (encoder.*) but no projector ({PROJECTOR_PREFIX}weight): '
                               f'expected {EXPECTED}')
    if not distilled and 'head.weight' not in state:
        raise OfficialKeyError(f'{path} has no classifier (head.weight) and no encoder.* student: expected {EXPECTED}')
    width, depths, patch, img_size = shape
    teacher = _teacher_from_config(checkpoint) or (_teacher_from_weights(state) if distilled else None)
    return OfficialFDModel(
        stage=DISTILLED if distilled else FINE_TUNED,
        kind=kind,
        arch=_arch_name(kind, width, depths, patch),
        teacher=teacher,
        img_size=img_size,
        num_classes=state['head.weight'].shape[0] if not distilled else None,
        teacher_channels=state[f'{PROJECTOR_PREFIX}weight'].shape[0] if distilled else None)


def official_to_ours(checkpoint: OfficialFDCheckpoint, model: OfficialFDModel) -> Tensors:
    """The tensors our checkpoint holds: the student backbone (distilled) or ``backbone.*`` + ``head.fc.*``."""
    state, path = checkpoint.model, checkpoint.path
    convert = official_vit_to_fdvit if model.kind == 'vit' else official_swinv2_to_mmpretrain
    if model.stage == DISTILLED:
        student = {k[len(STUDENT_PREFIX):]: v for k, v in state.items() if k.startswith(STUDENT_PREFIX)}
        return convert(student, f'{path} (student)')
    if model.kind == 'vit' and ('norm.weight' in state or 'fc_norm.weight' not in state):
        raise OfficialKeyError(f'{path}: a fine-tuned ViT that pools the class token (norm.*, no fc_norm.*); the '
                               'released models and our configs pool the patch tokens (USE_MEAN_POOLING: True)')
    head, body = split_head(state)
    backbone = convert(body, path)
    return {**{BACKBONE_PREFIX + k: v for k, v in backbone.items()}, **{'head.' + k: v for k, v in head.items()}}


def convert_official_fd(src: str, dst: str) -> Tuple[OfficialFDModel, Tensors]:
    """Reads a released FD file ``src`` and writes our checkpoint ``dst`` (atomically).

    Returns:
        The model found and the tensors written.

    Raises:
        CheckpointFileError: ``src`` is unreadable or holds objects that are not weights or plain data.
        OfficialKeyError: ``src`` is not a model of the official FD code, or has tensors we have no place for.
    """
    checkpoint = read_official_fd_checkpoint(src)
    model = identify_official_fd(checkpoint)
    tensors = official_to_ours(checkpoint, model)
    configs = model.configs()
    meta = dict(
        converted_from=osp.basename(src),
        official_model=model.describe(),
        config=configs[1 if model.stage == FINE_TUNED else 0] if configs else None)
    if model.stage == DISTILLED:
        meta['out_indices'] = []  # as fd_to_backbone.py writes for a backbone without dense outputs
    elif model.num_classes == 1000:
        from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
        meta['dataset_meta'] = dict(classes=list(IMAGENET_CATEGORIES))
    save_state_dict(tensors, dst, meta)
    return model, tensors


__all__ = ['OfficialFDModel', 'OfficialKeyError', 'convert_official_fd', 'identify_official_fd', 'official_to_ours']
