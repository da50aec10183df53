"""COCO Mask R-CNN configs (configs/mask_rcnn_coco/ and the CPU demo) build, load their init checkpoints,
train and evaluate at tiny size.

The recipes are kept (ms-crop pipeline scaled down, ViTPyramidNeck + FPN, layer-decay AdamW); the backbone is
a 4-layer width-32 ViT initialised from a tiny checkpoint in the converted format, the FPN and heads are 32
channels wide, and the data is a synthetic COCO-format set of three ~96 px images with polygon instances.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner

from fdclip_mm.converters.clip_to_vit import clip_to_vit_state_dict
from fdclip_mm.models.backbones import FDViT
from ..helpers.checkpoints import clip_visual_state_dict, tiny_vit_arch
from ..helpers.config_lists import ALL_CONFIGS, REPO, assert_inferencers_find_the_loader
from ..helpers.dense_data import write_coco

MASK_RCNN_CONFIGS = [p for p in ALL_CONFIGS if osp.basename(p).startswith('mask-rcnn_')]
FD_CONFIG = 'configs/mask_rcnn_coco/mask-rcnn_fd-clip-vit-b16_fpn_ms-crop-1x_coco.py'
CLIP_CONFIG = 'configs/mask_rcnn_coco/mask-rcnn_clip-vit-b16_fpn_ms-crop-1x_coco.py'
DEMO_CONFIG = 'configs/demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py'
TINY = tiny_vit_arch(32, 4, 2)
IMAGENET = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
CLIP = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305])

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_init_checkpoint(backbone, path: str) -> dict:
    """A tiny distilled student (shared RPB) or CLIP tower in the converted ``{'state_dict': ...}`` format.

    The checkpoint is written at a 2 x 2 patch grid, the tiny backbone runs at 4 x 4, so loading resizes the
    position encodings as it does for the real 224 px checkpoints.
    """
    patch = backbone.patch_size
    if backbone.type == 'fdclip_mm.FDViT':
        state = FDViT(arch=TINY, img_size=2 * patch, patch_size=patch, pos_embed='shared_rpb').state_dict()
    elif backbone.type == 'mmpretrain.VisionTransformer':
        visual = clip_visual_state_dict(width=32, layers=4, patch=patch, image=2 * patch)
        state = clip_to_vit_state_dict({
            k[len('visual.'):]: v
            for k, v in visual.items()
        },
                                       final_norm=False,
                                       head_norm=False)
    else:
        raise NotImplementedError(backbone.type)
    torch.save({'state_dict': state}, path)
    backbone.init_cfg.checkpoint = path
    return state


def scale_pipeline(transforms: list, factor: int) -> None:
    """Divides every resize scale and crop size of a pipeline (nested RandomChoice included) by ``factor``."""
    for t in transforms:
        if isinstance(t, list):
            scale_pipeline(t, factor)
            continue
        if 'transforms' in t:
            scale_pipeline(t.transforms, factor)
        if 'scale' in t:
            t.scale = tuple(s // factor for s in t.scale)
        if 'scales' in t:
            t.scales = [tuple(s // factor for s in scale) for scale in t.scales]
        if 'crop_size' in t:
            t.crop_size = tuple(s // factor for s in t.crop_size)


def shrink_heads(model: dict, channels: int = 32) -> None:
    """FPN, RPN and RoI heads of width ``channels`` instead of 256 (and 1024 for the box head's FCs)."""
    model.neck[1].out_channels = channels
    model.rpn_head.in_channels = model.rpn_head.feat_channels = channels
    roi_head = model.roi_head
    roi_head.bbox_roi_extractor.out_channels = roi_head.mask_roi_extractor.out_channels = channels
    roi_head.bbox_head.in_channels = roi_head.mask_head.in_channels = channels
    roi_head.bbox_head.fc_out_channels = 2 * channels
    roi_head.mask_head.conv_out_channels = channels


def shrink(cfg: Config, tmp_path) -> Config:
    """Tiny backbone (4 x 4 patch grid, its 4 blocks feed the 4 levels) and heads; images / 8; tiny COCO."""
    backbone = cfg.model.backbone
    backbone.arch = TINY
    backbone.img_size = 4 * backbone.patch_size
    backbone.out_indices = (0, 1, 2, 3)
    tiny_init_checkpoint(backbone, str(tmp_path / 'init.pth'))
    cfg.model.neck[0].embed_dims = TINY['embed_dims']
    cfg.model.neck[1].in_channels = [TINY['embed_dims']] * 4
    shrink_heads(cfg.model)
    cfg.model.test_cfg.rcnn.score_thr = 0.  # an untrained head scores ~1/81 per class: keep its boxes
    data_root = write_coco(str(tmp_path / 'coco'))
    loaders = ((cfg.train_dataloader, 'train'), (cfg.val_dataloader, 'val'), (cfg.test_dataloader, 'val'))
    for loader, split in loaders:
        scale_pipeline(loader.dataset.pipeline, 8)
        loader.dataset.data_root = data_root
        loader.dataset.ann_file = f'annotations/instances_{split}2017.json'
        loader.dataset.data_prefix = dict(img=f'{split}2017/')
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = osp.join(data_root, 'annotations', 'instances_val2017.json')
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)  # 3 images = 2 iterations
    cfg.default_hooks.checkpoint = None  # mmengine pretty-prints the config into each checkpoint (slow here)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    return cfg


def build_model(cfg: Config):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        init_default_scope(cfg.default_scope)
        # SyncBN -> BN, as mmengine's Runner does without a process group
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    return model


def batch(cfg: Config, loader_cfg, indices) -> dict:
    from mmdet.registry import DATASETS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        dataset = DATASETS.build(loader_cfg.dataset)
        return pseudo_collate([dataset[i] for i in indices])


def test_configs_are_found():
    swin = 'configs/mask_rcnn_coco/mask-rcnn_fd-clip-swin-t_fpn_ms-crop-1x_coco.py'  # test_swin_student_dense_configs
    assert sorted(MASK_RCNN_CONFIGS) == sorted([CLIP_CONFIG, FD_CONFIG, DEMO_CONFIG, swin])


@pytest.mark.parametrize('config,stats', [(FD_CONFIG, IMAGENET), (CLIP_CONFIG, CLIP)])
def test_recipe_values(config, stats):
    """Appendix H: batch 16 = 8 GPUs x 2, AdamW lr 2e-4, layer decay 0.75, lr x0.1 at epochs 9, 11 of 12."""
    cfg = Config.fromfile(osp.join(REPO, config))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['fdclip_mm'], allow_failed_imports=False)
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert cfg.optim_wrapper.constructor == 'fdclip_mm.LayerDecayOptimWrapperConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    assert cfg.train_cfg.max_epochs == 12
    step = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert len(step) == 1 and step[0].milestones == [9, 11] and step[0].gamma == 0.1 and step[0].by_epoch
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 8 * 2
    preprocessor = cfg.model.data_preprocessor
    assert (preprocessor.mean, preprocessor.std) == (stats['mean'], stats['std']) and preprocessor.bgr_to_rgb
    assert preprocessor.pad_size_divisor == 32
    backbone = cfg.model.backbone
    assert (backbone.patch_size, backbone.out_type, tuple(backbone.out_indices), backbone.final_norm) == \
        (16, 'featmap', (3, 5, 7, 11), False)
    assert cfg.model.neck[0] == dict(
        type='fdclip_mm.ViTPyramidNeck',
        embed_dims=768,
        rescales=(4, 2, 1, 0.5),
        norm_cfg=dict(type='SyncBN', requires_grad=True))
    assert cfg.model.neck[1].type == 'FPN' and cfg.model.neck[1].in_channels == [768] * 4
    choice = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomChoice')
    assert [[t.type for t in branch]
            for branch in choice.transforms] == [['RandomChoiceResize'],
                                                 ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']]
    assert cfg.val_evaluator.metric == ['bbox', 'segm']


@pytest.mark.parametrize('config', [FD_CONFIG, CLIP_CONFIG, DEMO_CONFIG])
def test_builds_loads_init_and_runs(config, tmp_path):
    """Init checkpoint: zero missing / unexpected keys; loss and predict on real pipeline outputs."""
    from mmengine.optim import build_optim_wrapper
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    assert_inferencers_find_the_loader(cfg)
    model = build_model(cfg)
    assert [type(m).__name__ for m in model.neck] == ['ViTPyramidNeck', 'FPN']

    # mmengine's Pretrained init and a strict load of the same file give the same weights.
    saved = torch.load(cfg.model.backbone.init_cfg.checkpoint, weights_only=True)['state_dict']
    initialised = copy.deepcopy(model.backbone.state_dict())
    result = model.backbone.load_state_dict(copy.deepcopy(saved), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(initialised[name], value, rtol=0, atol=0, msg=name)
        if name in saved and saved[name].shape == value.shape:
            torch.testing.assert_close(value, saved[name], rtol=0, atol=0, msg=name)
    if cfg.model.backbone.type == 'fdclip_mm.FDViT':  # the shared table became one table per layer
        tables = [layer.attn.rel_pos_bias.relative_position_bias_table for layer in model.backbone.layers]
        assert tables[0].shape == ((2 * 4 - 1)**2 + 3, TINY['num_heads'])
        for table in tables[1:]:
            torch.testing.assert_close(table, tables[0], rtol=0, atol=0)
        torch.testing.assert_close(tables[0][-3:], saved['rel_pos_bias.relative_position_bias_table'][-3:])

    # Layer decay: the embeddings' lr is 0.75 ** (L + 1) times the heads' (L = 4 tiny blocks).
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {n: g['lr'] for g in optim_wrapper.optimizer.param_groups for n in g['param_names']}
    head_lr = lrs['roi_head.bbox_head.fc_cls.weight']
    assert head_lr == pytest.approx(cfg.optim_wrapper.optimizer.lr)
    assert lrs['backbone.patch_embed.projection.weight'] / head_lr == pytest.approx(0.75**5)
    assert lrs['backbone.layers.3.ffn.layers.1.weight'] / head_lr == pytest.approx(0.75)
    assert lrs['neck.0.branches.0.0.weight'] == head_lr and lrs['neck.1.fpn_convs.0.conv.weight'] == head_lr

    torch.manual_seed(0)
    model.train()
    data = model.data_preprocessor(batch(cfg, cfg.train_dataloader, [0, 1]), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        value = sum(losses[key]) if isinstance(losses[key], list) else losses[key]
        assert torch.isfinite(value) and value > 0, key
    sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if k.startswith('loss')).backward()
    assert model.backbone.patch_embed.projection.weight.grad.abs().sum() > 0

    model.eval()
    raw = batch(cfg, cfg.val_dataloader, [0, 1])
    with torch.no_grad():
        data = model.data_preprocessor(raw, training=False)
        results = model.predict(data['inputs'], data['data_samples'])
    for result in results:
        h, w = result.ori_shape
        pred = result.pred_instances
        n = len(pred)
        assert 0 < n <= cfg.model.test_cfg.rcnn.max_per_img
        assert pred.bboxes.shape == (n, 4) and pred.masks.shape == (n, h, w)
        assert pred.masks.dtype == torch.bool
        # clipped to the resized image, then scaled back to the original size (float rounding)
        assert ((pred.bboxes[:, 0::2] >= 0) & (pred.bboxes[:, 0::2] <= w + 1e-3)).all()
        assert ((pred.bboxes[:, 1::2] >= 0) & (pred.bboxes[:, 1::2] <= h + 1e-3)).all()
        assert (pred.bboxes[:, 2:] >= pred.bboxes[:, :2]).all()
        assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
        assert ((pred.labels >= 0) & (pred.labels < 80)).all()


@pytest.mark.slow
@pytest.mark.parametrize('config', [FD_CONFIG, CLIP_CONFIG, DEMO_CONFIG])
def test_trains_and_evaluates(config, tmp_path, monkeypatch):
    """One short epoch through mmengine's Runner and a validation pass with mmdet's CocoMetric."""
    # The Runner logs and dumps the config through yapf, ~10 s per run on this CPU; unformatted is as valid.
    monkeypatch.setattr('mmengine.config.config.FormatCode', lambda text, **kwargs: (text, False))
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    assert runner.iter == 2
    assert torch.isfinite(torch.tensor(hub.get_scalar('train/loss').current()))
    for metric in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert 0 <= hub.get_scalar(f'val/{metric}').current() <= 1, metric


def test_demo_float_strides(tmp_path):
    """Patch 14: pyramid strides 3.5 / 7 / 14 / 28 (+56) are exact for mmdet's anchors and RoIAlign."""
    cfg = shrink(Config.fromfile(osp.join(REPO, DEMO_CONFIG)), tmp_path)
    model = build_model(cfg).eval()
    strides = [3.5, 7, 14, 28, 56]
    assert [s[0] for s in model.rpn_head.prior_generator.strides] == strides
    assert [layer.spatial_scale for layer in model.roi_head.bbox_roi_extractor.roi_layers] == \
        [1 / s for s in strides[:4]]
    data = model.data_preprocessor(batch(cfg, cfg.val_dataloader, [0]), training=False)
    height, width = data['inputs'].shape[-2:]
    assert height % 56 == 0 and width % 56 == 0  # pad_size_divisor=56 (divisible by the patch size 14)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
    assert [tuple(f.shape[-2:]) for f in feats] == [(height / s, width / s) for s in strides]

    fh, fw = feats[0].shape[-2:]
    anchors = model.rpn_head.prior_generator.grid_priors([f.shape[-2:] for f in feats], device='cpu')[0]
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).reshape(fh, fw, -1, 2)  # (rows, columns, anchors, xy)
    torch.testing.assert_close(centres[..., 0], (torch.arange(fw) * 3.5).view(1, -1, 1).expand(fh, fw, 3))
    torch.testing.assert_close(centres[..., 1], (torch.arange(fh) * 3.5).view(-1, 1, 1).expand(fh, fw, 3))

    # RoIAlign on the stride-3.5 level of a map whose value is the image x coordinate of each cell centre
    # returns the image x coordinates of the RoI's bin centres.
    x_map = ((torch.arange(fw) + 0.5) * 3.5).expand(1, 1, fh, fw).contiguous()
    rois = torch.tensor([[0., 7., 7., 42., 35.]])
    pooled = model.roi_head.bbox_roi_extractor.roi_layers[0](x_map, rois)
    expected = 7. + (torch.arange(7) + 0.5) * 35. / 7
    torch.testing.assert_close(pooled[0, 0], expected.expand(7, 7), rtol=0, atol=1e-4)
