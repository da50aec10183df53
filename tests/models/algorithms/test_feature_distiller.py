import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from fdclip_mm.checkpoint import load_state_dict_exactly
from fdclip_mm.evaluation import DistillLossMetric
from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.feature_map import feature_tokens
from ...helpers.checkpoints import tiny_teacher_cfg
from ...helpers.distiller import STUDENT_ARCH, batch, build

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1) * 255
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1) * 255


def teacher_tokens(model, images):
    return feature_tokens(model.teacher(images), with_cls=True)


def test_preprocessor_normalises_same_crop_twice(tiny_clip_teacher):
    model = build(tiny_clip_teacher)
    data = batch()
    out = model.data_preprocessor(data)['inputs']
    rgb = torch.stack(data['inputs']).float().flip(1)
    imagenet_mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    imagenet_std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    torch.testing.assert_close(out['student'], (rgb - imagenet_mean) / imagenet_std)
    (teacher, ) = out['teachers']  # one batch per teacher
    torch.testing.assert_close(teacher, (rgb - CLIP_MEAN) / CLIP_STD)


def test_loss_matches_the_method_by_value(tiny_clip_teacher):
    model = build(tiny_clip_teacher).eval()
    inputs = model.data_preprocessor(batch())['inputs']
    with torch.no_grad():
        tokens = teacher_tokens(model, inputs['teachers'][0])
        target = F.layer_norm(tokens, (32, ))
        pred = model.branches['t0'].projector(model.student.forward_features(inputs['student']))
        expected = F.smooth_l1_loss(pred, target, beta=2.0)
        loss = model(inputs, mode='loss')['loss']
    assert tokens.shape == (4, 17, 32) and pred.shape == (4, 17, 32)
    torch.testing.assert_close(loss, expected)


@pytest.mark.slow
def test_loss_falls_and_teacher_stays_frozen(tiny_clip_teacher):
    torch.manual_seed(0)
    model = build(tiny_clip_teacher)
    model.train()
    assert not model.teacher.training and model.student.training
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=2e-3)))
    data = batch(8)
    losses = [model.train_step(data, optim)['loss'].item() for _ in range(40)]
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(not p.requires_grad and p.grad is None for p in model.teacher.parameters())
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k])


def test_teacher_is_not_in_checkpoints_and_round_trips(tiny_clip_teacher):
    model = build(tiny_clip_teacher).eval()
    state = model.state_dict()
    assert any('.teacher.' in k for k, _ in model.named_parameters())
    assert state and not any('teacher' in k for k in state)
    beside_student = {k for k in state if not k.startswith('student.')}
    assert beside_student == {'branches.t0.projector.weight', 'branches.t0.projector.bias'}
    other = build(tiny_clip_teacher).eval()
    result = other.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    inputs = model.data_preprocessor(batch())['inputs']
    torch.testing.assert_close(other(inputs, mode='loss')['loss'], model(inputs, mode='loss')['loss'])


@pytest.mark.parametrize('projector', ['projectors.0.', 'projector.'])
def test_checkpoints_of_earlier_layouts_load(tiny_clip_teacher, projector):
    """The projector by teacher index beside the student (``projectors.0.*``, the layout until the teachers became
    branches), and before several teachers, ``projector.*``: written out key by key, they load exactly."""
    model = build(tiny_clip_teacher).eval()
    earlier = {f'student.{k}': v.clone() for k, v in model.student.state_dict().items()}
    earlier[projector + 'weight'] = torch.randn(32, 48)
    earlier[projector + 'bias'] = torch.randn(32)
    loaded = build(tiny_clip_teacher).eval()
    load_state_dict_exactly(loaded, earlier, 'earlier.pth')
    torch.testing.assert_close(loaded.branches['t0'].projector.weight, earlier[projector + 'weight'], rtol=0, atol=0)
    torch.testing.assert_close(loaded.branches['t0'].projector.bias, earlier[projector + 'bias'], rtol=0, atol=0)
    inputs = model.data_preprocessor(batch())['inputs']
    with torch.no_grad():
        target = F.layer_norm(teacher_tokens(loaded, inputs['teachers'][0]), (32, ))
        tokens = loaded.student.forward_features(inputs['student'])
        pred = tokens @ earlier[projector + 'weight'].T + earlier[projector + 'bias']
        torch.testing.assert_close(loaded(inputs, mode='loss')['loss'], F.smooth_l1_loss(pred, target, beta=2.0))


def test_predict_mode_gives_per_image_loss_and_metric(tiny_clip_teacher):
    model = build(tiny_clip_teacher).eval()
    data = model.data_preprocessor(batch(4))
    samples = model(data['inputs'], mode='predict')
    per_image = torch.stack([s.distill_loss for s in samples])
    assert per_image.shape == (4, )
    torch.testing.assert_close(per_image.mean(), model(data['inputs'], mode='loss')['loss'])
    metric = DistillLossMetric()
    metric.process(None, [s.to_dict() for s in samples])
    metrics = metric.compute_metrics(metric.results)
    assert metrics['feature_error'] == pytest.approx(per_image.mean().item(), rel=1e-5)
    # mmengine's LogProcessor window-averages any scalar named '*loss*': the metric must not be one
    assert not any('loss' in key for key in metrics)


def test_ablation_switches(tiny_clip_teacher):
    raw = build(tiny_clip_teacher, target_norm=None, loss=dict(type='FeatureDistillLoss', loss_type='cosine')).eval()
    inputs = raw.data_preprocessor(batch())['inputs']
    with torch.no_grad():
        target = teacher_tokens(raw, inputs['teachers'][0])
        pred = raw.branches['t0'].projector(raw.student.forward_features(inputs['student']))
        expected = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
        torch.testing.assert_close(raw(inputs, mode='loss')['loss'], expected)
    with pytest.raises(ValueError, match='target_norm'):
        build(tiny_clip_teacher, target_norm='bn')


def test_teacher_of_another_patch_grid_is_resampled_to_the_students(tiny_clip_teacher):
    """Student patch 16 (2x2 grid) under a patch-8 teacher (4x4): the target is the teacher's 2x2 block means."""
    model = build(tiny_clip_teacher, student=dict(patch_size=16)).eval()
    inputs = model.data_preprocessor(batch())['inputs']
    with torch.no_grad():
        features = model.teacher(inputs['teachers'][0])
        pooled = F.avg_pool2d(features.patches, 2).flatten(2).transpose(1, 2)
        target = F.layer_norm(torch.cat([features.cls_token[:, None], pooled], 1), (32, ))
        pred = model.branches['t0'].projector(model.student.forward_features(inputs['student']))
        expected = F.smooth_l1_loss(pred, target, beta=2.0)
        torch.testing.assert_close(model(inputs, mode='loss')['loss'], expected)


def test_optimizer_holds_student_and_projector_only(tiny_clip_teacher):
    model = build(tiny_clip_teacher)
    optim = build_optim_wrapper(
        model,
        dict(
            constructor='fdclip_mm.TrainableOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'relative_position_bias_table': dict(decay_mult=0.)})))
    in_optimizer = {id(p) for group in optim.optimizer.param_groups for p in group['params']}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    assert not any(id(p) in in_optimizer for p in model.teacher.parameters())
    assert all(id(p) in in_optimizer for p in model.branches['t0'].projector.parameters())
    table = model.student.rel_pos_bias.relative_position_bias_table
    group = [g for g in optim.optimizer.param_groups if any(p is table for p in g['params'])][0]
    assert group['weight_decay'] == 0.0


def test_masked_input_loss_is_taken_on_kept_tokens(tiny_clip_teacher):
    model = build(tiny_clip_teacher, mask_ratio=0.75).eval()
    inputs = model.data_preprocessor(batch())['inputs']
    torch.manual_seed(3)
    ids_keep = model.sample_kept_patches(inputs['student'])
    assert ids_keep.shape == (4, 4) and torch.equal(ids_keep, ids_keep.sort(1).values)
    with torch.no_grad():
        target = F.layer_norm(teacher_tokens(model, inputs['teachers'][0]), (32, ))
        kept = torch.cat([torch.zeros(4, 1, dtype=torch.long), ids_keep + 1], 1)
        pred = model.branches['t0'].projector(model.student.forward_features(inputs['student'], ids_keep))
        expected = F.smooth_l1_loss(pred, torch.stack([target[b, kept[b]] for b in range(4)]), beta=2.0)
        torch.manual_seed(3)
        loss = model(inputs, mode='loss')['loss']
    assert pred.shape == (4, 5, 32)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match='mask_ratio'):
        build(tiny_clip_teacher, mask_ratio=1.0)


def test_teacher_resizes_another_input_size_to_its_own(tmp_path):
    """A 56-px student under a teacher built for 28 px: the teacher sees the crop resized to 28 (bicubic)."""
    teacher = tiny_teacher_cfg('dinov2', str(tmp_path / 'dinov2.pth'), patch=14, image=28)
    student = dict(type='FDViT', arch=STUDENT_ARCH, img_size=56, patch_size=14)
    model = FeatureDistiller(student=student, teacher=teacher).eval()
    images = torch.randn(2, 3, 56, 56)
    small = F.interpolate(images, size=(28, 28), mode='bicubic', align_corners=False, antialias=True)
    torch.testing.assert_close(model.teacher(images).patches, model.teacher(small).patches)
    assert model.teacher(images).grid == (2, 2)


def test_first_training_batch_warns_when_crops_differ_from_img_size(tiny_clip_teacher, capsys):
    MMLogger.get_instance(f'crop_{id(capsys)}')  # 'current' logger, printing to the captured stdout
    model = build(tiny_clip_teacher)
    model(model.data_preprocessor(batch(), True)['inputs'], mode='loss')
    assert 'training crops' not in capsys.readouterr().out
    model._checked_input_size = False
    big = dict(inputs=[torch.zeros(3, 48, 48, dtype=torch.uint8)] * 2)
    for _ in range(2):
        model(model.data_preprocessor(big, True)['inputs'], mode='loss')
    out = capsys.readouterr().out
    assert out.count('training crops are (48, 48) but the student is built for img_size (32, 32)') == 1
