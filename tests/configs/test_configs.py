"""Every distillation config builds and runs one short epoch (and a validation pass) at tiny size.

The real recipes are kept (pipelines, schedules, optimizer settings, loss); only the model widths, the
teacher file (a random checkpoint in the published layout), the data folder and the number of iterations
are shrunk.
"""
import glob
import os
import os.path as osp
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..conftest import (assert_inferencers_find_the_loader, clip_visual_state_dict, dinov2_state_dict, esvit_checkpoint,
                        scheduled_lrs, timm_vit_state_dict, tiny_vit_arch, write_image_folder)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ALL_CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p and '_deprecation_' not in Path(p).read_text())  # old names: tests/configs/test_old_names.py


def is_classification_config(path: str) -> bool:
    """ImageNet fine-tuning configs and the classification demo (tested in tests/configs/test_finetune_configs.py)."""
    return path.startswith(osp.join('configs', 'finetune_in1k', '')) or osp.basename(path).startswith('finetune_')


def is_distillation_config(path: str) -> bool:
    """Distillation configs (configs/fd/ and the distillation demo); dense-task configs have their own tests."""
    return path.startswith(osp.join('configs', 'fd', '')) or osp.basename(path).startswith('fd_')


CONFIGS = [p for p in ALL_CONFIGS if is_distillation_config(p)]
TINY_ARCH = tiny_vit_arch(32, 2, 2, mlp_ratio=2)
#: The optimizer wrapper without AMP of each AMP one, for machines without CUDA.
NON_AMP = {'AmpOptimWrapper': 'OptimWrapper', 'fdclip_mm.CheckedAmpOptimWrapper': 'fdclip_mm.CheckedOptimWrapper'}


def tiny_swin_arch(depths) -> dict:
    return dict(embed_dims=16, depths=[1] * len(depths), num_heads=[1] * len(depths))


def shrink_student(student) -> None:
    """Tiny widths and depths, the config's patch sizes, windows and grids kept."""
    if 'Swin' in student.type:
        depths = student.arch['depths'] if isinstance(student.arch, dict) else [2, 2, 18, 2]
        student.arch = dict(
            tiny_swin_arch(depths), **({
                'extra_norm_every_n_blocks': 0
            } if 'V2' in student.type else {}))
    else:
        student.arch = TINY_ARCH


def tiny_teacher_checkpoint(teacher_cfg, path: str) -> None:
    """Shrinks a BackboneTeacher config and writes a random checkpoint of its family in the published layout."""
    from fdclip_mm.models.teachers.families import family_defaults
    backbone = teacher_cfg.backbone
    image = teacher_cfg.get('img_size') or backbone.get('img_size', 224)
    reader = teacher_cfg.get('reader') or family_defaults(teacher_cfg.get('family')).get('reader', 'mmpretrain')
    if reader == 'esvit_swin':
        backbone.arch = tiny_swin_arch(backbone.arch['depths'])
        esvit_checkpoint(
            path,
            backbone.arch,
            window_size=backbone.window_size,
            img_size=image,
            stage_cfgs=backbone.get('stage_cfgs'))
    else:
        backbone.arch = tiny_vit_arch(32, 2, 2)
        if reader == 'clip':
            torch.save(clip_visual_state_dict(width=32, layers=2, patch=backbone.patch_size, image=image), path)
        elif reader == 'dinov2':
            torch.save(dinov2_state_dict(hidden=32, layers=2, patch=backbone.patch_size, image=image), path)
        elif reader == 'timm_vit':
            torch.save({'model': timm_vit_state_dict(width=32, depth=2, patch=backbone.patch_size, image=image)}, path)
        else:
            raise NotImplementedError(f'no tiny checkpoint for teacher reader {reader}')
    teacher_cfg.checkpoint = path


def teacher_cfgs(model_cfg) -> list:
    return [model_cfg.teacher] if model_cfg.get('teacher') else [entry.teacher for entry in model_cfg.teachers]


def shrink(cfg: Config, tmp_path) -> Config:
    shrink_student(cfg.model.student)
    for index, teacher in enumerate(teacher_cfgs(cfg.model)):
        tiny_teacher_checkpoint(teacher, str(tmp_path / f'teacher{index}.pth'))
    images = write_image_folder(str(tmp_path / 'images' / 'train'), 4, size=(256, 288))
    write_image_folder(str(tmp_path / 'images' / 'val'), 2, size=(256, 288), seed=1)
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader), ('val', cfg.test_dataloader)):
        dataset = loader.dataset
        while 'dataset' in dataset:  # unwrap RepeatDataset & co.
            dataset = dataset.dataset
        loader.dataset = dict(
            type='mmpretrain.CustomDataset',
            data_root=osp.dirname(images),
            data_prefix=split,
            with_label=False,
            pipeline=dataset.pipeline)
        loader.batch_size = 2
        loader.num_workers = 0
        loader.pop('prefetch_factor', None)  # torch refuses it without workers
        loader.persistent_workers = False
        loader.pin_memory = False
    if cfg.optim_wrapper.type in NON_AMP and not torch.cuda.is_available():
        cfg.optim_wrapper.type = NON_AMP[cfg.optim_wrapper.type]
        for amp_key in ('loss_scale', 'dtype', 'use_fsdp'):
            cfg.optim_wrapper.pop(amp_key, None)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    return cfg


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_and_trains(config, tmp_path):
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    assert_inferencers_find_the_loader(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpt = torch.load(osp.join(cfg.work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert not any('teacher' in k for k in ckpt['state_dict'])
    assert runner.message_hub.get_scalar('val/distill/feature_error').current() > 0
    assert runner.message_hub.get_scalar('train/loss').current() > 0


def test_fd_config_switched_to_decoding_on_the_device_trains(tmp_path):
    """configs/_base_/datasets/imagenet_fd_gpu-decode.py in place of imagenet_fd.py: the workers send each JPEG's
    bytes and crop, the data preprocessor decodes the batch on the model's device (the CPU here)."""
    from fdclip_mm.datasets.device_decode import is_encoded_crop
    main = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')
    text = open(main).read().replace('/datasets/imagenet_fd.py', '/datasets/imagenet_fd_gpu-decode.py')
    switched = tmp_path / 'switched.py'
    switched.write_text(text.replace("'../_base_/", f"'{REPO}/configs/_base_/"))
    assert 'imagenet_fd_gpu-decode.py' in switched.read_text()
    cfg = shrink(Config.fromfile(str(switched)), tmp_path)
    assert cfg.train_dataloader.collate_fn.type == 'pseudo_collate'
    runner = Runner.from_cfg(cfg)
    assert is_encoded_crop(runner.train_dataloader.dataset[0]['inputs'])
    runner.train()
    assert runner.message_hub.get_scalar('train/loss').current() > 0


def load(name: str) -> Config:
    return Config.fromfile(osp.join(REPO, 'configs', 'fd', name))


def random_crop(cfg: Config) -> dict:
    return [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'fdclip_mm.DecodeRandomResizedCrop'][0]


def crop_scale(cfg: Config) -> tuple:
    return tuple(random_crop(cfg).crop_ratio_range)


def test_fd_configs_encode_table_4():
    cfg = load('fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')
    optim = cfg.optim_wrapper
    assert optim.type == 'fdclip_mm.CheckedAmpOptimWrapper' and optim.clip_grad.max_norm == 3.0
    assert optim.optimizer == dict(type='AdamW', lr=1.2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, fused=True)
    assert cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.train_dataloader.batch_size * 16 == 2048
    # official schedule at batch 2048: 2e-6 -> 1.2e-3 over 10 epochs, cosine to 2e-5 at 300; all three scale
    # together with --auto-scale-lr (here: half the batch)
    epoch = 10
    for ratio in (1.0, 0.5):
        start, peak, end = scheduled_lrs(
            cfg.param_scheduler, [dict(lr=1.2e-3)], epoch, [0, 10 * epoch, 300 * epoch], batch_ratio=ratio)
        assert (start[0], peak[0], end[0]) == pytest.approx((2e-6 * ratio, 1.2e-3 * ratio, 2e-5 * ratio), rel=1e-4)
    assert cfg.train_cfg.max_epochs == 300
    assert crop_scale(cfg) == (0.08, 1.0)
    assert random_crop(cfg).interpolation == 'bilinear'  # torchvision's default, as the official pipeline
    # RPB tables are decayed (official); norms, biases, 1-D parameters, cls token and position embeddings not
    assert optim.paramwise_cfg.custom_keys == dict(cls_token=dict(decay_mult=0.0), pos_embed=dict(decay_mult=0.0))
    assert not any(t.type in ('ColorJitter', 'RandAugment') for t in cfg.train_dataloader.dataset.pipeline)
    student, teacher, model = cfg.model.student, cfg.model.teacher, cfg.model
    assert (student.arch, student.patch_size, student.pos_embed, student.drop_path_rate) == \
        ('base', 16, 'shared_rpb', 0.2)
    # OpenAI CLIP (QuickGELU, pre-norm, eps 1e-5, CLIP's statistics): the 'clip' family's defaults, built in
    # tests/models/teachers/test_backbone_teacher.py
    assert student.layer_scale_init_value == 0.1 and teacher.type == 'BackboneTeacher' and teacher.family == 'clip'
    assert 'reader' not in teacher and 'mean' not in teacher
    assert model.loss == dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0)
    assert model.target_norm == 'ln'

    for dp in (0.1, 0.3):
        assert load(f'fd_clip-vit-b16_fdvit-b16-dp{dp}_16xb128-300e_in1k.py').model.student.drop_path_rate == dp

    short = load('fd_clip-vit-b16_fdvit-b16-dp0.1_16xb128-100e_in1k.py')
    assert short.train_cfg.max_epochs == 100 and short.param_scheduler[1].end == 100
    assert short.model.student.drop_path_rate == 0.1 and crop_scale(short) == (0.67, 1.0)

    large = load('fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k.py')
    assert (large.model.student.arch, large.model.student.patch_size, large.model.student.drop_path_rate) == \
        ('large', 14, 0.3)
    assert large.model.teacher.checkpoint.endswith('ViT-L-14.pt')


def test_variant_configs_of_the_supplement():
    for epochs in (100, 200, 400):
        cfg = load(f'fd_clip-vit-b16_fdvit-b16-mask75-dp0.1_16xb128-{epochs}e_in1k.py')
        assert cfg.model.mask_ratio == 0.75 and cfg.train_cfg.max_epochs == epochs
        assert cfg.param_scheduler[1].end == epochs
    for pos_embed in ('ape', 'rpb'):
        assert load(
            f'fd_clip-vit-b16_fdvit-b16-{pos_embed}-dp0.2_16xb128-300e_in1k.py').model.student.pos_embed == pos_embed
    for family, dp in (('mae', 0.2), ('dino', 0.3), ('deit', 0.3)):  # DINO / DeiT: the official yaml files' 0.3
        cfg = load(f'fd_{family}-vit-b16_fdvit-b16-dp{dp}_16xb128-300e_in1k.py')
        assert cfg.model.teacher.family == 'timm_vit' and 'layer_cfgs' not in cfg.model.teacher.backbone
        assert cfg.model.student.drop_path_rate == dp


def test_sharded_l14_config_builds_a_flexible_runner_with_fsdp2(tmp_path):
    """FSDP2 itself runs in tests/engine/test_fsdp2_strategy.py (2 gloo processes); here the config."""
    from fdclip_mm.engine import DistributedLaunchRequired, build_checked_runner
    cfg = load('fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k_fsdp.py')
    assert cfg.runner_type == 'fdclip_mm.CheckedFlexibleRunner' and cfg.model_wrapper_cfg is None
    assert cfg.model.student.arch == 'large' and cfg.model.student.patch_size == 14
    # mixed precision is the strategy's MixedPrecisionPolicy
    assert cfg.optim_wrapper.type == 'fdclip_mm.CheckedOptimWrapper'
    assert cfg.optim_wrapper.constructor == 'fdclip_mm.TrainableOptimWrapperConstructor'
    assert cfg.strategy.type == 'fdclip_mm.FSDP2Strategy' and cfg.strategy.param_dtype == 'auto'
    # started as one plain process, it says what to run instead (FSDP2 runs in tests/engine/test_fsdp2_strategy.py)
    cfg = shrink(cfg, tmp_path)
    with pytest.raises(DistributedLaunchRequired, match=r'needs a distributed launch: bash tools/dist_train.sh'):
        build_checked_runner(cfg)
    assert not os.path.exists(cfg.work_dir) or not os.listdir(cfg.work_dir)
