"""The fine-tuning configs shrunk to tiny size: the recipes kept (pipelines, batch augments, losses, schedules,
layer decay, EMA); the backbone shrunk, its init checkpoint a tiny distilled student / CLIP tower converted by our
converters, the data a tiny labelled image folder."""
import os.path as osp

import torch
from mmengine.config import Config

from fdclip_mm.converters.clip_to_vit import clip_to_vit_state_dict
from fdclip_mm.converters.dinov2_to_vit import dinov2_to_vit_state_dict
from fdclip_mm.converters.to_classifier import save_classifier_checkpoint, student_to_classifier_backbone
from fdclip_mm.models.backbones import FDViT
from .checkpoints import clip_visual_state_dict, dinov2_state_dict, tiny_vit_arch
from .images import write_image_folder
from .tiny_fd_configs import NON_AMP

TINY = tiny_vit_arch(32, 2, 2)

CLASSES = 5


def tiny_init_checkpoint(backbone, path: str) -> None:
    """A tiny distilled student (FDViT), DINOv2 (VisionTransformer with layer scale) or CLIP tower
    (VisionTransformer) converted to a classifier checkpoint."""
    img, patch = backbone.img_size, backbone.get('patch_size')
    if 'SwinTransformer' in backbone.type:  # the student as fd_to_backbone.py writes it: mmpretrain's keys
        from mmpretrain.models import SwinTransformerV2
        swin = SwinTransformerV2(arch=backbone.arch, img_size=img, window_size=backbone.window_size, out_indices=(3, ))
        torch.save(dict(state_dict=swin.state_dict()), path)
        backbone.init_cfg.checkpoint = path
        return
    if backbone.type == 'fdclip_mm.FDViT':
        student = FDViT(arch=TINY, img_size=img, patch_size=patch, pos_embed='shared_rpb').state_dict()
        state = student_to_classifier_backbone(student)
    elif backbone.type == 'VisionTransformer' and backbone.get('layer_scale_init_value'):
        weights = dinov2_state_dict(hidden=TINY['embed_dims'], layers=TINY['num_layers'], patch=patch, image=img)
        state = dinov2_to_vit_state_dict(weights, (img // patch, ) * 2)
    elif backbone.type == 'VisionTransformer':
        visual = clip_visual_state_dict(width=32, layers=2, patch=patch, image=img)
        state = clip_to_vit_state_dict({k[len('visual.'):]: v for k, v in visual.items()})
    else:
        raise NotImplementedError(backbone.type)
    save_classifier_checkpoint(state, path)
    backbone.init_cfg.checkpoint = path


def write_labelled_folder(root: str, per_class: int, seed: int) -> str:
    """``per_class`` random images in each of ``CLASSES`` class folders under ``root``; returns ``root``."""
    for c in range(CLASSES):
        write_image_folder(osp.join(root, f'class_{c}'), per_class, size=(40, 48), seed=seed + c)
    return root


def shrink_pipeline(pipeline: list, size: int) -> None:
    """Crops of ``size`` instead of 224 (the transforms themselves are kept)."""
    for t in pipeline:
        if t.type in ('RandomResizedCrop', 'fdclip_mm.DecodeRandomResizedCrop'):
            t.scale = size
        elif t.type == 'ResizeEdge':
            t.scale = size * 8 // 7
        elif t.type == 'CenterCrop':
            t.crop_size = size
        elif t.type == 'Resize':
            t.scale = (size, size)


def shrink(cfg: Config, tmp_path) -> Config:
    """Shrinks a fine-tuning config in place (files under ``tmp_path``) to one short epoch; returns it."""
    model = cfg.model
    if 'SwinTransformer' in model.backbone.type:  # 64 px: stages of 16, 8, 4, 2 tokens, 2 x 2 windows
        model.backbone.update(
            arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], extra_norm_every_n_blocks=0),
            img_size=64,
            window_size=2)
        head_channels = 128
    else:
        model.backbone.arch = TINY
        model.backbone.img_size = 2 * model.backbone.patch_size  # a 2 x 2 patch grid
        head_channels = TINY['embed_dims']
    if model.backbone.get('init_cfg'):
        tiny_init_checkpoint(model.backbone, str(tmp_path / 'init.pth'))
    model.head.num_classes = CLASSES
    model.head.in_channels = head_channels
    model.data_preprocessor.num_classes = CLASSES
    root = str(tmp_path / 'images')
    write_labelled_folder(osp.join(root, 'train'), 1, seed=0)
    write_labelled_folder(osp.join(root, 'val'), 1, seed=10)
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader), ('val', cfg.test_dataloader)):
        shrink_pipeline(loader.dataset.pipeline, model.backbone.img_size)
        loader.dataset = dict(
            type='mmpretrain.CustomDataset', data_root=root, data_prefix=split, pipeline=loader.dataset.pipeline)
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.pin_memory = False
    if cfg.optim_wrapper.type in NON_AMP and not torch.cuda.is_available():
        cfg.optim_wrapper.type = NON_AMP[cfg.optim_wrapper.type]
        cfg.optim_wrapper.pop('loss_scale', None)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    return cfg
