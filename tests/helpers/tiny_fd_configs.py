"""The distillation configs shrunk to tiny size: the recipes kept (pipelines, schedules, optimizer, loss); the
model widths, the teacher file (a random checkpoint in the published layout), the data (a tiny image folder) and
the run (one short epoch) shrunk."""
import os.path as osp

import torch
from mmengine.config import Config

from .checkpoints import clip_visual_state_dict, dinov2_state_dict, esvit_checkpoint, timm_vit_state_dict, tiny_vit_arch
from .config_lists import REPO
from .images import write_image_folder

#: The main distillation config (FD-CLIP ViT-B/16, Table 4).
FD_CONFIG = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')

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


def deterministic_fd_config(tmp_path, epochs: int) -> Config:
    """The tiny FD config with fixed crops and no drop path: every source of randomness is seeded."""
    cfg = shrink(Config.fromfile(FD_CONFIG), tmp_path)
    cfg.model.student.drop_path_rate = 0.
    pipeline = [
        dict(type='fdclip_mm.CheckedLoadImageFromFile'),
        dict(type='Resize', scale=(32, 32)),
        dict(type='PackInputs')
    ]
    cfg.train_dataloader.dataset.pipeline = pipeline
    cfg.val_dataloader.dataset.pipeline = pipeline
    cfg.model.student.img_size = 32
    cfg.model.teacher.img_size = 32
    cfg.randomness = dict(seed=0)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=1)
    return cfg
