"""Every config in configs/ builds and runs one short epoch (and a validation pass) at tiny size.

The real recipes are kept (pipelines, schedules, optimizer settings, loss); only the model widths, the
teacher file (a random checkpoint in the published layout), the data folder and the number of iterations
are shrunk.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..conftest import clip_visual_state_dict, write_image_folder

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def tiny_teacher_checkpoint(teacher_cfg, patch: int, image: int, path: str) -> None:
    if teacher_cfg.type == 'CLIPTeacher':
        torch.save(clip_visual_state_dict(width=32, layers=2, patch=patch, image=image), path)
        teacher_cfg.num_heads = 2
    elif teacher_cfg.type == 'DINOv2Teacher':
        from ..models.teachers.test_dinov2_teacher import tiny_dinov2_state_dict
        torch.save(tiny_dinov2_state_dict(hidden=32, layers=2, patch=patch, image=image), path)
        teacher_cfg.num_heads = 2
    else:
        raise NotImplementedError(f'no tiny checkpoint for teacher type {teacher_cfg.type}')
    teacher_cfg.checkpoint = path


def shrink(cfg: Config, tmp_path) -> Config:
    student = cfg.model.student
    student.arch = TINY_ARCH
    tiny_teacher_checkpoint(cfg.model.teacher, student.patch_size, student.img_size, str(tmp_path / 'teacher.pth'))
    images = write_image_folder(str(tmp_path / 'images' / 'train'), 4, size=(256, 288))
    write_image_folder(str(tmp_path / 'images' / 'val'), 2, size=(256, 288), seed=1)
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader)):
        dataset = loader.dataset
        while 'dataset' in dataset:  # unwrap RepeatDataset & co.
            dataset = dataset.dataset
        loader.dataset = dict(type='mmpretrain.CustomDataset', data_root=osp.dirname(images), data_prefix=split,
                              with_label=False, pipeline=dataset.pipeline)
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.pin_memory = False
    if cfg.optim_wrapper.type == 'AmpOptimWrapper' and not torch.cuda.is_available():
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    return cfg


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_and_trains(config, tmp_path):
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpt = torch.load(osp.join(cfg.work_dir, 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert not any(k.startswith('teacher.') for k in ckpt['state_dict'])
    assert 'distill/loss' in runner.message_hub.log_scalars
