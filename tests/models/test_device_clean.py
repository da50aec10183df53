"""Distillation training steps run whole on the meta device, where a tensor made on the CPU inside the step fails.

Every FDViT position encoding (masked or not, at its own input size and another, with activation
checkpointing), every teacher family, one and two teachers, every student family and the teacher-target cache:
data preprocessor, forward, loss, backward and AdamW step on meta under :class:`RefuseCPUTensors`, the model
built on the CPU as the other tests build it. What the step could make on the CPU and would then break on a GPU
is refused here (see ``tests/device_clean.py``); the last tests show that it is.
"""
import contextlib
import os.path as osp
from typing import Optional

import mmcv
import pytest
import torch
from mmengine.structures import BaseDataElement

from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.algorithms.teacher_target_cache import TeacherTargetCache, write_target_cache
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.backbones.fd_vit import POS_EMBEDS
from fdclip_mm.models.feature_map import output_layout
from fdclip_mm.models.teachers import teacher_config
from fdclip_mm.models.teachers.families import TEACHER_FAMILIES
from ..device_clean import META, CPUTensorInStepError, RefuseCPUTensors, meta_train_step, trainable
from ..helpers.checkpoints import clip_visual_state_dict, esvit_checkpoint, tiny_teacher_cfg, tiny_vit_arch
from ..helpers.students import STUDENTS

pytestmark = pytest.mark.usefixtures('one_thread')

STUDENT = dict(type='FDViT', arch=tiny_vit_arch(32, 2, 2, mlp_ratio=2), img_size=32, patch_size=8, drop_path_rate=0.1)
SWIN_ARCH = dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2])
#: Student parameters no loss reaches: ResNet-18's stages after its output stage.
UNUSED = {'resnet': ('student.layer3.', 'student.layer4.')}


def batch(n: int = 2, size: int = 32, folder: Optional[str] = None) -> dict:
    """A batch as the data loader gives it: CPU uint8 images (and, with ``folder``, data samples whose
    ``img_path`` names the image written there)."""
    gen = torch.Generator().manual_seed(0)
    data = dict(inputs=[torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8) for _ in range(n)])
    if folder:
        paths = [osp.join(folder, f'img_{i}.png') for i in range(n)]
        for path, image in zip(paths, data['inputs']):
            mmcv.imwrite(image.permute(1, 2, 0).numpy(), path)
        data['data_samples'] = [BaseDataElement(metainfo=dict(img_path=path)) for path in paths]
    return data


def family_teacher(family: str, tmp_path, **options) -> dict:
    """A tiny teacher of ``family`` from a random checkpoint in its published layout (32-px input)."""
    path = str(tmp_path / f'{family}.pth')
    if family in ('clip', 'timm_vit', 'dinov2'):
        patch, image = (14, 28) if family == 'dinov2' else (8, 32)
        return dict(tiny_teacher_cfg(family, path, patch=patch, image=image), **options)
    if family == 'open_clip':  # the OpenAI layout, with GELU
        torch.save(clip_visual_state_dict(), path)
        return teacher_config('open_clip', path, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32, **options)
    if family == 'esvit_swin':
        esvit_checkpoint(path, SWIN_ARCH, window_size=4, img_size=32)
        return teacher_config(
            'esvit_swin', path, arch=SWIN_ARCH, img_size=32, window_size=4, out_indices=(1, ), **options)
    raise NotImplementedError(f'no tiny teacher of family {family!r}: add one here')


def assert_all_trained(result: dict, but=()) -> None:
    """The optimizer stepped every trainable parameter (on meta), the teachers' none."""
    model = result['model']
    assert result['stepped'] == trainable(model, but), sorted(trainable(model, but) ^ result['stepped'])
    assert not any('.teacher.' in name for name in result['stepped'])


@pytest.mark.parametrize('pos_embed', POS_EMBEDS)
@pytest.mark.parametrize('mask_ratio, size', [(0., 32), (0.75, 32), (0.5, 48)])
def test_fdvit_student_step(pos_embed, mask_ratio, size, tiny_clip_teacher):
    """48-px crops: position encodings fitted to the 6 x 6 grid on the fly, the teacher's input resized."""
    model = FeatureDistiller(
        student=dict(STUDENT, pos_embed=pos_embed), teacher=tiny_clip_teacher, mask_ratio=mask_ratio)
    result = meta_train_step(model, batch(size=size))
    assert set(result['log_vars']) == {'loss'}
    assert_all_trained(result)
    expected = {
        'ape': 'student.pos_embed',
        'rpb': 'student.layers.1.attn.rel_pos_bias.relative_position_bias_table',
        'shared_rpb': 'student.rel_pos_bias.relative_position_bias_table'
    }[pos_embed]
    assert expected in result['stepped']


def test_activation_checkpointing_step(tiny_clip_teacher):
    model = FeatureDistiller(
        student=dict(STUDENT, pos_embed='rpb', with_cp=True), teacher=tiny_clip_teacher, mask_ratio=0.5)
    assert_all_trained(meta_train_step(model, batch()))


@pytest.mark.parametrize('family', sorted(TEACHER_FAMILIES))
def test_teacher_family_step(family, tmp_path):
    model = FeatureDistiller(student=STUDENT, teacher=family_teacher(family, tmp_path), mask_ratio=0.5)
    assert model.teacher.family == family
    result = meta_train_step(model, batch())
    assert_all_trained(result)
    assert all(p.device == META for p in model.teacher.parameters())


class RecordedAutocast(contextlib.nullcontext):
    """Stands in for ``torch.autocast``, which has no meta device; records what it was asked for."""

    calls = []

    def __init__(self, device_type: str, enabled: bool = True, **kwargs) -> None:
        super().__init__()
        self.calls.append((device_type, enabled))


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_low_precision_teacher_step(dtype, tmp_path, monkeypatch):
    """The teacher runs in bf16 / fp16 with autocast off on the input's device ('cuda' on a GPU), its target in
    fp32."""
    monkeypatch.setattr(torch, 'autocast', RecordedAutocast)
    RecordedAutocast.calls = []
    model = FeatureDistiller(student=STUDENT, teacher=family_teacher('clip', tmp_path, dtype=dtype))
    result = meta_train_step(model, batch())
    assert_all_trained(result)
    assert RecordedAutocast.calls == [('meta', False)]
    assert {p.dtype for p in model.teacher.parameters()} == {getattr(torch, dtype)}
    assert result['log_vars']['loss'].dtype == torch.float32


@pytest.mark.parametrize('mask_ratio', [0., 0.75])
def test_two_teachers_step(mask_ratio, tmp_path):
    """A patch-8 CLIP and a patch-14 DINOv2 on a 28-px grid (its target resampled to the student's 4 x 4)."""
    teachers = [
        dict(teacher=family_teacher('clip', tmp_path), name='clip'),
        dict(
            teacher=family_teacher('dinov2', tmp_path),
            name='dino',
            loss_weight=0.5,
            target_norm=None,
            loss=dict(type='FeatureDistillLoss', loss_type='cosine'))
    ]
    model = FeatureDistiller(student=STUDENT, teachers=teachers, mask_ratio=mask_ratio)
    result = meta_train_step(model, batch())
    assert set(result['log_vars']) == {'loss', 'loss_clip', 'loss_dino'}
    assert_all_trained(result)
    assert {'branches.clip.projector.weight', 'branches.dino.projector.weight'} <= result['stepped']


@pytest.mark.parametrize('name', sorted(STUDENTS))
def test_student_family_step(name, tiny_clip_teacher):
    model = FeatureDistiller(student=STUDENTS[name][0], teacher=tiny_clip_teacher)
    assert_all_trained(meta_train_step(model, batch()), but=UNUSED.get(name, ()))


def test_validation_step(tmp_path):
    """Per-image losses of two teachers, on the device."""
    teachers = [
        dict(teacher=family_teacher('clip', tmp_path), name='clip'),
        dict(teacher=family_teacher('esvit_swin', tmp_path), name='esvit')
    ]
    model = FeatureDistiller(student=STUDENT, teachers=teachers).to(META).eval()
    with RefuseCPUTensors():
        samples = model.val_step(batch(3))
    assert [s.distill_loss.device for s in samples] == [META] * 3


def cached_model(teacher: dict, tmp_path) -> FeatureDistiller:
    """A distiller reading teacher targets from a cache (CPU tensors in a file) written for :func:`batch`."""
    live = FeatureDistiller(student=STUDENT, teacher=teacher).eval()
    data = batch(folder=str(tmp_path))
    with torch.no_grad():
        features = live.teacher(live.data_preprocessor(data)['inputs']['teachers'][0])
    path = str(tmp_path / 'targets.pth')
    pipeline = [dict(type='PackInputs')]
    keys = [s.img_path for s in data['data_samples']]
    write_target_cache(path, keys, features, meta=dict(pipeline=pipeline, teacher=live.teacher_identity()))
    model = FeatureDistiller(student=STUDENT, teacher=teacher, target_cache=path, mask_ratio=0.5)
    model.target_cache.check_run(keys, pipeline, model.teacher_identity())
    return model


def test_target_cache_step(tiny_clip_teacher, tmp_path):
    """The cached tokens (CPU, float16) go to the student's device; the teacher does not run."""
    model = cached_model(tiny_clip_teacher, tmp_path)
    model.teacher.forward = None  # a training step that ran the teacher would fail
    assert_all_trained(meta_train_step(model, batch(folder=str(tmp_path))))
    assert model.target_cache.tokens.device.type == 'cpu'


def cpu_mask(self, images: torch.Tensor) -> torch.Tensor:
    """``sample_kept_patches`` drawing its noise on the CPU: meta alone lets its ``gather`` pass."""
    grid = output_layout(self.student).grid(images.shape[-2:])
    noise = torch.rand(images.shape[0], grid[0] * grid[1])
    return noise.argsort(dim=1)[:, :4].sort(dim=1).values


def cpu_constant(self, x: torch.Tensor, ids_keep=None) -> torch.Tensor:
    """``forward_features`` adding a constant made on the CPU."""
    return ORIGINAL_FORWARD_FEATURES(self, x, ids_keep) + torch.ones(self.embed_dims)


def cpu_cached_targets(self, data_samples, device: torch.device):
    """``TeacherTargetCache.targets`` leaving the tokens on the CPU."""
    return self.features(self.lookup([s.img_path for s in data_samples]))


ORIGINAL_FORWARD_FEATURES = FDViT.forward_features
INJECTED_CPU_TENSORS = {
    'mask on the CPU': (FeatureDistiller, 'sample_kept_patches', cpu_mask),
    'CPU constant': (FDViT, 'forward_features', cpu_constant),
    'cache left on the CPU': (TeacherTargetCache, 'targets', cpu_cached_targets),
}


@pytest.mark.parametrize('case', sorted(INJECTED_CPU_TENSORS))
def test_a_cpu_tensor_made_in_the_step_fails_it(case, tiny_clip_teacher, tmp_path, monkeypatch):
    owner, name, replacement = INJECTED_CPU_TENSORS[case]
    model = cached_model(tiny_clip_teacher, tmp_path)
    monkeypatch.setattr(owner, name, replacement)
    with pytest.raises(CPUTensorInStepError, match='CPU tensors'):
        meta_train_step(model, batch(folder=str(tmp_path)))


def test_the_guard_refuses_what_cuda_refuses():
    x = torch.zeros(2, 3, device=META, requires_grad=True)
    index = torch.zeros(2, 1, dtype=torch.long)
    with RefuseCPUTensors() as guard:
        x.gather(1, index.to(META))  # on the device: fine
        x[torch.tensor([1, 0])] + torch.tensor(2.)  # CPU indices and a CPU scalar, as CUDA takes them
        x.detach().copy_(torch.ones(2, 3))  # a copy to the device
        for mixed in (lambda: x.gather(1, index), lambda: x.detach().mul_(torch.ones(2, 3)),
                      lambda: torch.cat([x, torch.ones(2, 3)])):
            with pytest.raises(CPUTensorInStepError, match=r'got CPU tensors of shapes \[\(2, \d\)\]'):
                mixed()
    assert guard.ops > 0
