import os.path as osp

import pytest
import torch

from fdclip_mm.converters import convert_fd_checkpoint
from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.teachers import teacher_config
from ..helpers.checkpoints import tiny_vit_arch

ARCH = dict(embed_dims=48, num_layers=2, num_heads=2, feedforward_channels=96)


def distiller(ckpt):
    return FeatureDistiller(
        student=dict(type='FDViT', arch=ARCH, img_size=32, patch_size=8),
        teacher=teacher_config('clip', ckpt, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32)).eval()


def test_student_backbone_loads_into_downstream_backbones(tiny_clip_checkpoint, tmp_path):
    model = distiller(tiny_clip_checkpoint)
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    src = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 1}}, src)
    (tmp_path / 'last_checkpoint').write_text(src)
    dst = str(tmp_path / 'out' / 'backbone.pth')

    student = convert_fd_checkpoint(str(tmp_path), dst)  # a work dir: its last checkpoint
    assert not osp.exists(dst + '.tmp')
    assert set(student) == set(model.student.state_dict())
    saved = torch.load(dst, weights_only=True)['state_dict']
    assert not any(k.startswith(('teacher', 'projector', 'student')) for k in saved)

    x = torch.randn(2, 3, 32, 32)
    same = FDViT(arch=ARCH, img_size=32, patch_size=8).eval()
    same.load_state_dict(saved, strict=True)
    torch.testing.assert_close(same.forward_features(x), model.student.forward_features(x))
    # a fine-tuning backbone: per-layer RPB, larger input, classification output
    finetune = FDViT(arch=ARCH, img_size=48, patch_size=8, pos_embed='rpb', out_type='avg_featmap', final_norm=False)
    result = finetune.load_state_dict(saved, strict=False)  # the distilled ln1 is dropped (final_norm=False)
    assert set(result.missing_keys) == {'ln2.weight', 'ln2.bias'} and result.unexpected_keys == []
    for layer in finetune.layers:
        assert layer.attn.rel_pos_bias.relative_position_bias_table.shape == ((2 * 6 - 1)**2 + 3, 2)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        convert_fd_checkpoint(str(tmp_path / 'missing.pth'), str(tmp_path / 'x.pth'))
    with pytest.raises(FileNotFoundError, match='last_checkpoint'):
        convert_fd_checkpoint(str(tmp_path), str(tmp_path / 'x.pth'))
    other = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {'backbone.cls_token': torch.zeros(1)}}, other)
    with pytest.raises(KeyError, match='no "student." keys'):
        convert_fd_checkpoint(other, str(tmp_path / 'x.pth'))
    vit_student = str(tmp_path / 'vit.pth')
    torch.save({'state_dict': {'student.cls_token': torch.zeros(1, 1, 8)}}, vit_student)
    with pytest.raises(KeyError, match=r'vit\.pth: no stage 0 of a Swin or ConvNeXt .*Swin / ConvNeXt students only'):
        convert_fd_checkpoint(vit_student, str(tmp_path / 'x.pth'), out_indices=(0, 1))
    assert not osp.exists(tmp_path / 'x.pth')
