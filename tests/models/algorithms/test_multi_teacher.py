"""Several teachers: one projector, whitening, loss and weight each; one logged loss each; their weighted sum."""
import pytest
import torch
import torch.nn.functional as F

from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.feature_map import feature_tokens, resample_patches
from ...helpers.checkpoints import tiny_teacher_cfg

STUDENT = dict(
    type='FDViT',
    arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=32,
    patch_size=8)


@pytest.fixture
def teachers(tmp_path):
    clip = tiny_teacher_cfg('clip', str(tmp_path / 'clip.pth'), width=32, patch=8, image=32)
    dino = tiny_teacher_cfg('timm_vit', str(tmp_path / 'dino.pth'), width=48, patch=16, image=32)
    return [
        dict(teacher=clip, name='clip'),
        dict(
            teacher=dino,
            name='dino',
            loss_weight=0.5,
            target_norm=None,
            loss=dict(type='FeatureDistillLoss', loss_type='cosine'))
    ]


def batch(n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8) for _ in range(n)])


def test_each_teacher_has_its_loss_and_the_total_is_their_weighted_sum(teachers):
    model = FeatureDistiller(student=STUDENT, teachers=teachers).eval()
    inputs = model.data_preprocessor(batch())['inputs']
    assert isinstance(inputs['teachers'], tuple) and len(inputs['teachers']) == 2
    assert list(model.branches) == ['clip', 'dino']
    clip_branch, dino_branch = model.branches.values()
    rgb = torch.stack(batch()['inputs']).float().flip(1)
    for batch_of_teacher, teacher in zip(inputs['teachers'], (clip_branch.teacher, dino_branch.teacher)):
        mean, std = torch.tensor(teacher.mean).view(1, 3, 1, 1), torch.tensor(teacher.std).view(1, 3, 1, 1)
        torch.testing.assert_close(batch_of_teacher, (rgb - mean) / std)
    with torch.no_grad():
        losses = model(inputs, mode='loss')
        tokens = model.student.forward_features(inputs['student'])
        clip = clip_branch.teacher(inputs['teachers'][0])
        clip_loss = F.smooth_l1_loss(
            clip_branch.projector(tokens), F.layer_norm(feature_tokens(clip, True), (32, )), beta=2.0)
        dino = dino_branch.teacher(inputs['teachers'][1])  # 2x2 grid -> enlarged to the student's 4x4
        dino_target = torch.cat(
            [dino.cls_token[:, None],
             resample_patches(dino.patches, (4, 4)).flatten(2).transpose(1, 2)], 1)
        dino_loss = (1 - F.cosine_similarity(dino_branch.projector(tokens), dino_target, dim=-1)).mean()
    assert set(losses) == {'loss_clip', 'loss_dino'}
    torch.testing.assert_close(losses['loss_clip'], clip_loss)
    torch.testing.assert_close(losses['loss_dino'], 0.5 * dino_loss)
    total, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(total, clip_loss + 0.5 * dino_loss)
    assert {'loss', 'loss_clip', 'loss_dino'} <= set(log_vars)
    samples = model(inputs, mode='predict')
    torch.testing.assert_close(torch.stack([s.distill_loss for s in samples]).mean(), total)


def test_both_projectors_get_gradients_and_checkpoints_hold_no_teacher(teachers):
    model = FeatureDistiller(student=STUDENT, teachers=teachers)
    inputs = model.data_preprocessor(batch(), True)['inputs']
    losses = model(inputs, mode='loss')
    model.parse_losses(losses)[0].backward()
    projectors = [branch.projector for branch in model.branches.values()]
    assert [tuple(p.weight.shape) for p in projectors] == [(32, 32), (48, 32)]
    assert all(p.weight.grad is not None and p.weight.grad.abs().sum() > 0 for p in projectors)
    assert all(p.grad is None for branch in model.branches.values() for p in branch.teacher.parameters())
    state = model.state_dict()
    assert not any('teacher' in k for k in state) and 'branches.dino.projector.weight' in state
    with pytest.raises(RuntimeError, match='2 teachers'):
        model.teacher


def test_teacher_list_is_checked(teachers):
    with pytest.raises(ValueError, match='either teacher=dict'):
        FeatureDistiller(student=STUDENT, teacher=teachers[0]['teacher'], teachers=teachers)
    with pytest.raises(ValueError, match='names must differ'):
        FeatureDistiller(student=STUDENT, teachers=[dict(teachers[0]), dict(teachers[0])])
    with pytest.raises(ValueError, match=r"teachers\[0\] needs a teacher config.*\['checkpoint'"):
        FeatureDistiller(student=STUDENT, teachers=[dict(checkpoint='x.pth')])


def test_an_unreadable_teacher_file_names_the_teacher_and_the_file(teachers, tmp_path):
    from fdclip_mm.checkpoint import CheckpointFileError
    missing = [
        teachers[0],
        dict(teachers[1], teacher=dict(teachers[1]['teacher'], checkpoint=str(tmp_path / 'no.pth')))
    ]
    with pytest.raises(FileNotFoundError, match=r"teacher 'dino' \(teachers\[1\]\): .*no.pth"):
        FeatureDistiller(student=STUDENT, teachers=missing)
    (tmp_path / 'empty.pth').write_bytes(b'')
    empty = [
        dict(teachers[0], teacher=dict(teachers[0]['teacher'], checkpoint=str(tmp_path / 'empty.pth'))), teachers[1]
    ]
    with pytest.raises(CheckpointFileError, match=r"teacher 'clip' \(teachers\[0\]\): .*empty.pth is empty"):
        FeatureDistiller(student=STUDENT, teachers=empty)
