"""BackboneTeacher: frozen, precision, registry, input size, exact loading and clear errors."""
import logging
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from fdclip_mm.checkpoint import CheckpointMismatchError, NonFiniteWeightsError
from fdclip_mm.models.teachers import BackboneTeacher, teacher_config
from fdclip_mm.registry import MODELS
from ...helpers.checkpoints import clip_visual_state_dict, tiny_teacher_cfg, tiny_vit_arch


def build(cfg: dict) -> BackboneTeacher:
    return MODELS.build(cfg)


def test_frozen(tiny_clip_teacher):
    teacher = build(tiny_clip_teacher)
    assert isinstance(teacher, BackboneTeacher) and not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    out = teacher(torch.randn(1, 3, 32, 32, requires_grad=True))
    assert out.patches.grad_fn is None and out.cls_token.grad_fn is None
    assert (teacher.embed_dims, teacher.patch_size, teacher.img_size) == (32, 8, (32, 32))


def test_bfloat16_weights_give_float32_features_close_to_fp32(tiny_clip_teacher):
    fp32, bf16 = build(tiny_clip_teacher), build(dict(tiny_clip_teacher, dtype='bfloat16'))
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    x = torch.randn(2, 3, 32, 32)
    out = bf16(x)
    assert out.patches.dtype == torch.float32
    torch.testing.assert_close(out.patches, fp32(x).patches, atol=0.15, rtol=0.05)
    with pytest.raises(ValueError, match='teacher dtype must be one of'):
        build(dict(tiny_clip_teacher, dtype='half'))


def test_other_input_sizes_are_resized_to_the_teachers_and_logged_once(tiny_clip_teacher):
    teacher = build(tiny_clip_teacher)
    x = torch.randn(2, 3, 48, 40)
    resized = F.interpolate(x, size=(32, 32), mode='bicubic', align_corners=False, antialias=True)
    with mock.patch('fdclip_mm.models.teachers.backbone_teacher.print_log') as log:
        torch.testing.assert_close(teacher(x).patches, teacher(resized).patches)
        teacher(x)
    assert [call.args[0] for call in log.call_args_list] == [
        f'teacher {tiny_clip_teacher["checkpoint"]}: (48, 40) inputs are resized to its img_size (32, 32) '
        '(bicubic, antialiased) before it runs; the student sees them as they come'
    ]
    assert teacher.output_grid((48, 40)) == (4, 4)


def test_position_embedding_is_resized_once_at_build(tmp_path):
    from mmpretrain.models.utils import resize_pos_embed

    from fdclip_mm.models.teachers import read_teacher_checkpoint
    cfg = tiny_teacher_cfg('timm_vit', str(tmp_path / 'mae.pth'), patch=8, image=32, img_size=64)
    teacher = build(cfg)
    native = read_teacher_checkpoint('timm_vit', cfg['checkpoint'])['pos_embed']
    expected = resize_pos_embed(native, (4, 4), (8, 8), mode='bicubic', num_extra_tokens=1)
    torch.testing.assert_close(teacher.backbone.pos_embed, expected)
    assert teacher(torch.randn(1, 3, 64, 64)).grid == (8, 8)


def test_builds_from_the_registry_in_any_scope(tiny_clip_teacher):
    cfg = dict(tiny_clip_teacher, type='fdclip_mm.BackboneTeacher')
    assert isinstance(MODELS.build(cfg), BackboneTeacher)
    assert 'reader=' in repr(MODELS.build(cfg))


def test_errors_name_the_file(tmp_path, tiny_clip_teacher, tiny_clip_checkpoint):
    with pytest.raises(FileNotFoundError, match='absent.pt'):
        build(dict(tiny_clip_teacher, checkpoint=str(tmp_path / 'absent.pt')))
    with pytest.raises(KeyError, match=r"unknown teacher checkpoint reader 'openai'.*'clip'"):
        build(dict(tiny_clip_teacher, reader='openai'))
    wrong_arch = teacher_config('clip', tiny_clip_checkpoint, arch=tiny_vit_arch(32, 3, 2), patch_size=8)
    with pytest.raises(CheckpointMismatchError, match=r'tiny_clip.pth does not fit VisionTransformer.*missing'):
        build(wrong_arch)
    wrong_width = teacher_config('clip', tiny_clip_checkpoint, arch=tiny_vit_arch(64, 2, 2), patch_size=8)
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        build(wrong_width)
    dinov2_file = tiny_teacher_cfg('dinov2', str(tmp_path / 'dinov2.pth'), patch=14, image=28)['checkpoint']
    with pytest.raises(ValueError, match=r'dinov2.pth is not a CLIP visual tower'):
        build(dict(tiny_clip_teacher, checkpoint=dinov2_file))


def test_several_outputs_are_refused(tiny_clip_checkpoint):
    cfg = teacher_config(
        'clip', tiny_clip_checkpoint, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32, out_indices=(0, 1))
    with pytest.raises(ValueError, match='returned 2 outputs'):
        build(cfg)(torch.randn(1, 3, 32, 32))


def test_a_family_gives_the_reader_statistics_and_backbone_defaults(tiny_clip_checkpoint):
    from mmpretrain.models.utils import QuickGELU

    from fdclip_mm.models.teachers import CLIP_MEAN, CLIP_STD
    teacher = build(
        dict(
            type='fdclip_mm.BackboneTeacher',
            family='clip',
            checkpoint=tiny_clip_checkpoint,
            backbone=dict(arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32)))
    assert teacher.reader == 'clip' and teacher.mean == CLIP_MEAN and teacher.std == CLIP_STD
    backbone = teacher.backbone
    assert backbone.pre_norm.eps == 1e-5 and isinstance(backbone.layers[0].ffn.layers[0][1], QuickGELU)
    assert backbone.ln1.eps == 1e-5 and backbone.out_type == 'raw' and backbone.final_norm
    with pytest.raises(KeyError, match=r"unknown teacher family 'openai'; choose one of \['clip', "):
        build(
            dict(
                type='fdclip_mm.BackboneTeacher',
                family='openai',
                checkpoint=tiny_clip_checkpoint,
                backbone=dict(arch=tiny_vit_arch(32, 2, 2), patch_size=8)))


def test_a_nan_weight_is_refused_at_load_naming_the_file_and_the_tensor(tmp_path):
    """Else it is met only as a non-finite loss, and skipping such steps trains nothing."""
    state = clip_visual_state_dict()
    key = next(k for k in state if k.endswith('resblocks.1.mlp.c_fc.weight'))
    state[key][0, 3] = float('nan')
    path = str(tmp_path / 'nan_clip.pth')
    torch.save(state, path)
    with pytest.raises(
            NonFiniteWeightsError,
            match=rf'^teacher checkpoint {path} holds non-finite weights in 1 tensor\(s\): '
            r'layers.1.ffn.layers.0.0.weight \(1 NaN, 0 inf of 4096\)'):
        build(teacher_config('clip', path, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32))


def test_a_float16_teacher_on_the_cpu_warns_once(tiny_clip_teacher):
    teacher = build(dict(tiny_clip_teacher, dtype='float16'))
    with mock.patch('fdclip_mm.models.teachers.backbone_teacher.print_log') as log:
        teacher(torch.randn(1, 3, 32, 32))
        teacher(torch.randn(1, 3, 32, 32))
    assert [(call.args[0], call.kwargs['level']) for call in log.call_args_list] == [
        (f'teacher {tiny_clip_teacher["checkpoint"]} computes in float16 on the CPU, which runs float16 products '
         "several times slower than float32; use dtype='auto' (bfloat16 where the CPU has it, else float32)",
         logging.WARNING)
    ]
    with mock.patch('fdclip_mm.models.teachers.backbone_teacher.print_log') as log:
        build(dict(tiny_clip_teacher, dtype='bfloat16'))(torch.randn(1, 3, 32, 32))
    assert not log.call_args_list
