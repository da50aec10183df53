"""Every student family under a tiny ViT teacher: a few steps with a falling loss, the right target grid."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from fdclip_mm.models.algorithms import FeatureDistiller
from ...helpers.students import STUDENTS


def batch(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8) for _ in range(n)])


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(STUDENTS))
def test_student_family_trains_with_a_falling_loss(name, tiny_clip_teacher):
    student, grid, has_cls = STUDENTS[name]
    torch.manual_seed(0)
    model = FeatureDistiller(student=student, teacher=tiny_clip_teacher)
    inputs = model.data_preprocessor(batch())['inputs']
    with torch.no_grad():
        model.eval()
        features = model(inputs, mode='tensor')
    assert features.grid == grid and (features.cls_token is not None) == has_cls
    model.train()
    optim = build_optim_wrapper(
        model, dict(constructor='fdclip_mm.TrainableOptimWrapperConstructor', optimizer=dict(type='AdamW', lr=3e-3)))
    data = batch()
    losses = [model.train_step(data, optim)['loss'].item() for _ in range(25)]
    assert losses[-1] < 0.8 * losses[0], losses
    assert not any('teacher' in k for k in model.state_dict())


def test_masking_is_an_fdvit_feature(tiny_clip_teacher):
    student = STUDENTS['swin'][0]
    with pytest.raises(ValueError, match='mask_ratio=0.5 needs a student .*FDViT.*SwinTransformer'):
        FeatureDistiller(student=student, teacher=tiny_clip_teacher, mask_ratio=0.5)


def test_masked_fdvit_under_a_teacher_without_class_token(tmp_path):
    """A Swin-like teacher (no class token): the masked loss is taken on kept patches only."""
    from mmpretrain.models import SwinTransformer
    swin = SwinTransformer(
        arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2]), img_size=32, window_size=4, out_indices=(1, ))
    path = str(tmp_path / 'swin.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in swin.state_dict().items()}}, path)
    teacher = dict(
        type='BackboneTeacher',
        checkpoint=path,
        reader='mmpretrain',
        backbone=dict(
            type='SwinTransformer',
            arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2]),
            img_size=32,
            window_size=4,
            out_indices=(1, )))
    model = FeatureDistiller(student=STUDENTS['fdvit'][0], teacher=teacher, mask_ratio=0.5).eval()
    inputs = model.data_preprocessor(batch(2))['inputs']
    torch.manual_seed(1)
    ids_keep = model.sample_kept_patches(inputs['student'])
    with torch.no_grad():
        target = model.teacher(inputs['teachers'][0]).patches.flatten(2).transpose(1, 2)
        target = torch.nn.functional.layer_norm(target, (32, ))
        tokens = model.student.forward_features(inputs['student'], ids_keep)[:, 1:]
        pred = model.branches['t0'].projector(tokens)
        expected = torch.nn.functional.smooth_l1_loss(
            pred, torch.stack([target[b, ids_keep[b]] for b in range(2)]), beta=2.0)
        torch.manual_seed(1)
        torch.testing.assert_close(model(inputs, mode='loss')['loss'], expected)


@pytest.mark.parametrize('name', ['vit', 'swin'])
def test_a_backbone_without_the_interface_is_distilled_through_its_forward(name, tiny_clip_teacher):
    """The loss by the formula from the backbone's own output: its class token when it has one, else patches."""
    import torch.nn.functional as F

    from fdclip_mm.models.feature_map import feature_tokens
    student, _, has_cls = STUDENTS[name]
    model = FeatureDistiller(student=student, teacher=tiny_clip_teacher).eval()
    inputs = model.data_preprocessor(batch(2))['inputs']
    with torch.no_grad():
        output = model.student(inputs['student'])[0]
        tokens = output if has_cls else output.flatten(2).transpose(1, 2)
        target = F.layer_norm(feature_tokens(model.teacher(inputs['teachers'][0]), has_cls), (32, ))
        expected = F.smooth_l1_loss(model.branches['t0'].projector(tokens), target, beta=2.0)
        torch.testing.assert_close(model(inputs, mode='loss')['loss'], expected)
        (extracted, ) = model.extract_feat(inputs)
        torch.testing.assert_close(extracted, tokens)
