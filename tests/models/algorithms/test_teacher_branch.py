"""One teacher's branch: its loss on the student's tokens by the formula, weighted once; its entries checked."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from fdclip_mm.models.algorithms.student_tokens import StudentTokens
from fdclip_mm.models.algorithms.teacher_branch import TeacherBranch, branch_specs
from fdclip_mm.models.feature_map import FeatureMap, feature_tokens

LOSS = dict(type='fdclip_mm.FeatureDistillLoss', loss_type='smooth_l1', beta=2.0)


@pytest.fixture
def teacher(tiny_clip_teacher):
    return MODELS.build(dict(tiny_clip_teacher, _scope_='fdclip_mm'))


def student_tokens(has_cls: bool, ids_keep=None, channels: int = 24) -> StudentTokens:
    count = 16 if ids_keep is None else ids_keep.shape[1]
    return StudentTokens(torch.randn(2, int(has_cls) + count, channels), (4, 4), has_cls, ids_keep)


def test_the_loss_is_the_weighted_smooth_l1_of_the_projected_tokens_on_the_whitened_target(teacher):
    torch.manual_seed(0)
    branch = TeacherBranch(teacher, 24, LOSS, 'ln', loss_weight=0.5)
    target = teacher(torch.randn(2, 3, 32, 32))  # 4 x 4 patches and a class token
    student = student_tokens(has_cls=True)
    with torch.no_grad():
        pred = student.tokens @ branch.projector.weight.T + branch.projector.bias
        expected = 0.5 * F.smooth_l1_loss(pred, F.layer_norm(feature_tokens(target, True), (32, )), beta=2.0)
        torch.testing.assert_close(branch.loss(student, target), expected)
        per_image = branch.loss(student, target, per_sample=True)
    assert per_image.shape == (2, )
    torch.testing.assert_close(per_image.mean(), expected)


def test_kept_patches_and_a_side_without_class_token(teacher):
    """The target's kept patches (after its class token when both have one); only patches when one side has none."""
    branch = TeacherBranch(teacher, 24, LOSS, None)
    target = teacher(torch.randn(2, 3, 32, 32))
    ids_keep = torch.tensor([[0, 5, 9], [3, 4, 15]])
    student = student_tokens(has_cls=True, ids_keep=ids_keep)
    with torch.no_grad():
        pred = branch.project(student.tokens)
        tokens = feature_tokens(target, True)
        kept = torch.stack([tokens[b, torch.cat([torch.zeros(1, dtype=torch.long), ids_keep[b] + 1])] for b in (0, 1)])
        torch.testing.assert_close(branch.loss(student, target), F.smooth_l1_loss(pred, kept, beta=2.0))
        no_cls = FeatureMap(target.patches)  # e.g. a Swin teacher
        patches = feature_tokens(no_cls, False)
        expected = F.smooth_l1_loss(pred[:, 1:], torch.stack([patches[b, ids_keep[b]] for b in (0, 1)]), beta=2.0)
        torch.testing.assert_close(branch.loss(student, no_cls), expected)


def test_a_coarser_student_regresses_block_means(teacher):
    branch = TeacherBranch(teacher, 24, LOSS, 'ln')
    target = teacher(torch.randn(2, 3, 32, 32))
    student = StudentTokens(torch.randn(2, 4, 24), (2, 2), False)  # a stride-16 map without class token
    with torch.no_grad():
        pooled = F.avg_pool2d(target.patches, 2).flatten(2).transpose(1, 2)
        expected = F.smooth_l1_loss(branch.project(student.tokens), F.layer_norm(pooled, (32, )), beta=2.0)
        torch.testing.assert_close(branch.loss(student, target), expected)


def test_what_a_branch_takes(teacher):
    with pytest.raises(ValueError, match="target_norm must be one of \\('ln', None\\), got 'bn'"):
        TeacherBranch(teacher, 24, LOSS, 'bn')
    with pytest.raises(TypeError, match='the teacher must be a BackboneTeacher, got Linear'):
        TeacherBranch(torch.nn.Linear(2, 2), 24, LOSS)
    specs = branch_specs(None, [dict(teacher='a'), dict(teacher='b', name='dino', loss_weight=0.5)], LOSS, 'ln')
    assert [(s['name'], s['loss_weight'], s['target_norm'], s['loss']) for s in specs] == [('t0', 1.0, 'ln', LOSS),
                                                                                           ('dino', 0.5, 'ln', LOSS)]
    assert branch_specs(dict(type='X'), None, LOSS, None)[0] == dict(
        teacher=dict(type='X'), name='t0', loss_weight=1.0, loss=LOSS, target_norm=None)
    with pytest.raises(ValueError, match='teachers=\\[\\] names no teacher'):
        branch_specs(None, [], LOSS, 'ln')
    with pytest.raises(ValueError, match="teachers\\[0\\] needs a teacher config .*got keys \\['teacher', 'weight'\\]"):
        branch_specs(None, [dict(teacher='a', weight=2)], LOSS, 'ln')
