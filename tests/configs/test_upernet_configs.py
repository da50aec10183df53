"""ADE20K UperNet configs (configs/upernet_ade20k/ and the CPU demo) build, load their init checkpoint, train.

The recipes are kept (mmseg's UperNet + auxiliary FCN head, pipelines, slide inference, layer-decay AdamW,
warm-up + poly schedule); the backbone and heads are shrunk, the init checkpoint is a tiny distilled student
(through the FD converter) or a tiny CLIP tower (through the CLIP key map), and the data is a tiny synthetic
folder in ADE20K's layout.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import Runner

from fdclip_mm.converters import convert_fd_checkpoint, save_state_dict
from fdclip_mm.converters.clip_to_vit import load_clip_as_vit
from fdclip_mm.engine.layer_decay_optim_constructor import lr_and_wd_by_name
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.backbones.rel_pos_bias import geometric_resize_rel_pos_bias_table
from ..helpers.checkpoints import clip_visual_state_dict, tiny_vit_arch
from ..helpers.config_lists import REPO, assert_inferencers_find_the_loader
from ..helpers.dense_data import IMAGE_SIZE, NUM_CLASSES, write_ade_folder

FD_CONFIG = 'configs/upernet_ade20k/upernet_fd-clip-vit-b16_8xb2-160k_ade20k-512x512.py'
CLIP_CONFIG = 'configs/upernet_ade20k/upernet_clip-vit-b16_8xb2-160k_ade20k-512x512.py'
DEMO_CONFIG = 'configs/demo/upernet_fdvit-t14-6l_labelme-ade.py'
CONFIGS = [FD_CONFIG, CLIP_CONFIG, DEMO_CONFIG]

TINY = tiny_vit_arch(32, 4, 2)  # one block per pyramid level

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_init_checkpoint(backbone, tmp_path) -> str:
    """A tiny distilled student / CLIP tower, converted as the config's header says; sets ``init_cfg``.

    The checkpoint's patch grid is 2 x 2 while the backbone's is 4 x 4, so loading has to resize the position
    encodings (and copy the shared RPB table into every layer, for the student).
    """
    patch = backbone.patch_size
    path = str(tmp_path / 'backbone.pth')
    if backbone.type == 'fdclip_mm.FDViT':
        student = FDViT(arch=TINY, img_size=2 * patch, patch_size=patch, pos_embed='shared_rpb').state_dict()
        distill_ckpt = str(tmp_path / 'distill.pth')
        torch.save({'state_dict': {'student.' + k: v for k, v in student.items()}, 'meta': {}}, distill_ckpt)
        convert_fd_checkpoint(distill_ckpt, path)
    elif backbone.type == 'mmpretrain.VisionTransformer':  # as tools/model_converters/clip_to_backbone.py
        clip_file = str(tmp_path / 'clip.pth')
        torch.save(clip_visual_state_dict(width=32, layers=TINY['num_layers'], patch=patch, image=2 * patch), clip_file)
        save_state_dict(load_clip_as_vit(clip_file, final_norm=False, head_norm=False), path)
    else:
        raise NotImplementedError(backbone.type)
    backbone.init_cfg.checkpoint = path
    return path


def shrink(cfg: Config, tmp_path) -> Config:
    """Tiny backbone and heads, crops of 4 x 4 patches, the synthetic ADE20K folder, 2 training iterations."""
    model = cfg.model
    backbone = model.backbone
    crop = 4 * backbone.patch_size
    backbone.arch = TINY
    backbone.out_indices = tuple(range(TINY['num_layers']))
    backbone.img_size = crop
    tiny_init_checkpoint(backbone, tmp_path)
    model.neck.embed_dims = TINY['embed_dims']
    model.decode_head.in_channels = [TINY['embed_dims']] * 4
    model.decode_head.channels = 16
    model.auxiliary_head.in_channels = TINY['embed_dims']
    model.auxiliary_head.channels = 8
    model.data_preprocessor.size = (crop, crop)
    model.test_cfg.crop_size = (crop, crop)
    model.test_cfg.stride = (crop * 2 // 3, ) * 2

    root = write_ade_folder(str(tmp_path / 'ADEChallengeData2016'))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = root
        for t in loader.dataset.pipeline:
            if t.type in ('RandomResize', 'Resize'):
                t.scale = (4 * crop, crop)
            elif t.type == 'RandomCrop':
                t.crop_size = (crop, crop)
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = None  # mmengine formats the whole config for each checkpoint (~2 s here)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / 'work_dir')
    return cfg


def load(config: str) -> Config:
    return Config.fromfile(osp.join(REPO, config))


@pytest.mark.parametrize('config', CONFIGS)
def test_upernet_config_builds_loads_and_predicts(config, tmp_path):
    """Model with its converted init checkpoint (exact keys), loss, slide predict, optimizer."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DATASETS, MODELS, DefaultScope, init_default_scope
    cfg = shrink(load(config), tmp_path)
    assert_inferencers_find_the_loader(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        init_default_scope(cfg.default_scope)
        import fdclip_mm  # noqa: F401  (custom_imports)
        model = revert_sync_batchnorm(MODELS.build(cfg.model))  # as the non-distributed Runner does
        model.init_weights()
        train_set = DATASETS.build(cfg.train_dataloader.dataset)
        val_set = DATASETS.build(cfg.val_dataloader.dataset)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    # The init checkpoint is the whole backbone, as init_weights loaded it.
    saved = torch.load(cfg.model.backbone.init_cfg.checkpoint, weights_only=True)['state_dict']
    model.backbone.load_state_dict(saved, strict=True)  # raises on any missing or unexpected key
    qkv = model.backbone.layers[1].attn.qkv.weight
    torch.testing.assert_close(qkv, saved['layers.1.attn.qkv.weight'], rtol=0, atol=0)
    shared = saved.get('rel_pos_bias.relative_position_bias_table')
    if shared is not None:
        resized = geometric_resize_rel_pos_bias_table(shared, (2, 2), (4, 4))
        for layer in model.backbone.layers:
            torch.testing.assert_close(layer.attn.rel_pos_bias.relative_position_bias_table, resized)
    else:
        assert model.backbone.pos_embed.shape == (1, 1 + 16, TINY['embed_dims'])

    # Loss: the heads start at near-uniform logits (CE = ln 150 per labelled pixel); mmseg averages over all
    # pixels, ignored ones (ADE20K's "other", padding) included; the auxiliary head is weighted 0.4.
    crop = cfg.model.test_cfg.crop_size
    model.train()
    data = model.data_preprocessor(pseudo_collate([train_set[0], train_set[1]]), training=True)
    assert data['inputs'].shape == (2, 3, *crop)
    labels = torch.stack([s.gt_sem_seg.data for s in data['data_samples']])
    assert labels.shape == (2, 1, *crop)
    labelled = (labels != 255).float().mean().item()
    assert 0 < labelled < 1
    losses = model.loss(data['inputs'], data['data_samples'])
    assert losses['decode.loss_ce'].item() == pytest.approx(labelled * math.log(NUM_CLASSES), rel=0.02)
    assert losses['aux.loss_ce'].item() == pytest.approx(0.4 * labelled * math.log(NUM_CLASSES), rel=0.02)
    losses['decode.loss_ce'].backward()
    assert model.backbone.patch_embed.projection.weight.grad.abs().sum() > 0

    # Predict: slide inference over 2 windows of the crop size, logits at the original image size.
    model.eval()
    windows = []
    encode_decode = model.encode_decode
    model.encode_decode = lambda x, metas: windows.append(tuple(x.shape[-2:])) or encode_decode(x, metas)
    sample = val_set[0]
    resized_shape = tuple(sample['inputs'].shape[-2:])
    assert resized_shape[0] == crop[0] and resized_shape[1] > crop[1]
    with torch.no_grad():
        result, = model.test_step(pseudo_collate([sample]))
    assert windows == [crop, crop]
    assert result.seg_logits.data.shape == (NUM_CLASSES, *IMAGE_SIZE)
    assert result.pred_sem_seg.data.shape == (1, *IMAGE_SIZE)
    torch.testing.assert_close(result.pred_sem_seg.data[0], result.seg_logits.data.argmax(0))

    # Layer-wise lr decay over the backbone's L + 2 depths; no weight decay on the class token.
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    scales = sorted({g['lr_scale'] for g in optim_wrapper.optimizer.param_groups})
    assert scales == pytest.approx([rate**k for k in range(TINY['num_layers'] + 1, -1, -1)])
    lr_wd = lr_and_wd_by_name(optim_wrapper.optimizer)
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert lr_wd['backbone.cls_token'] == pytest.approx((base_lr * rate**(TINY['num_layers'] + 1), 0.))
    assert lr_wd['decode_head.conv_seg.weight'] == pytest.approx((base_lr, 0.05))


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS)
def test_upernet_config_trains_and_evaluates(config, tmp_path):
    """Two training iterations through mmengine's Runner, then validation with mmseg's IoUMetric."""
    cfg = shrink(load(config), tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    assert runner.iter == 2
    loss = hub.get_scalar('train/loss').current()
    assert math.isfinite(loss) and loss > 0
    for key in ('val/aAcc', 'val/mIoU', 'val/mAcc'):
        assert 0 <= hub.get_scalar(key).current() <= 100, key


def test_upernet_configs_encode_beit_recipe():
    """mmseg's BEiT-B ADE20K recipe at 512 x 512, for both backbones."""
    fd, clip = load(FD_CONFIG), load(CLIP_CONFIG)
    for cfg in (fd, clip):
        assert cfg.default_scope == 'mmseg' and cfg.custom_imports.imports == ['fdclip_mm']
        model = cfg.model
        assert model.type == 'EncoderDecoder'
        assert model.neck == dict(type='fdclip_mm.ViTPyramidNeck', embed_dims=768, rescales=(4, 2, 1, 0.5))
        head, aux = model.decode_head, model.auxiliary_head
        assert (head.type, head.in_channels, head.channels) == ('UPerHead', [768] * 4, 768)
        assert (aux.type, aux.in_channels, aux.in_index) == ('FCNHead', 768, 2)
        assert aux.loss_decode.loss_weight == 0.4 and head.num_classes == aux.num_classes == 150
        backbone = model.backbone
        assert (backbone.img_size, backbone.patch_size, backbone.out_type, backbone.out_indices) == \
            (512, 16, 'featmap', (3, 5, 7, 11))
        assert (backbone.final_norm, backbone.drop_path_rate) == (False, 0.1)
        assert model.data_preprocessor.size == (512, 512)
        assert model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
        pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
        assert (pipeline['RandomCrop'].crop_size, pipeline['RandomResize'].scale) == ((512, 512), (2048, 512))
        assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
        assert cfg.val_evaluator.type == 'IoUMetric'

        optim = cfg.optim_wrapper
        assert optim.constructor == 'fdclip_mm.LayerDecayOptimWrapperConstructor'
        assert optim.optimizer == dict(type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05)
        assert optim.paramwise_cfg.layer_decay_rate == 0.9
        warmup, poly = cfg.param_scheduler
        assert (warmup.type, warmup.start_factor, warmup.begin, warmup.end) == ('LinearLR', 1e-6, 0, 1500)
        assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == ('PolyLR', 1, 0, 1500, 160000)
        assert (cfg.train_cfg.type, cfg.train_cfg.max_iters) == ('IterBasedTrainLoop', 160000)
        assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
        assert cfg.val_dataloader.batch_size == 1

    assert fd.model.backbone.type == 'fdclip_mm.FDViT'
    assert (fd.model.backbone.pos_embed, fd.model.backbone.layer_scale_init_value) == ('rpb', 0.1)
    assert fd.model.backbone.init_cfg.checkpoint == 'data/weights/fd/fd-clip-vit-b16_backbone.pth'
    assert fd.model.data_preprocessor.mean == [123.675, 116.28, 103.53]

    assert clip.model.backbone.type == 'mmpretrain.VisionTransformer'
    assert clip.model.backbone.pre_norm and clip.model.backbone.qkv_bias
    assert clip.model.backbone.layer_cfgs.act_cfg.type == 'mmpretrain.QuickGELU'
    assert clip.model.backbone.norm_cfg.eps == 1e-5
    assert clip.model.backbone.init_cfg.checkpoint == 'data/weights/clip/clip-vit-b16_backbone.pth'
    assert clip.model.data_preprocessor.mean[0] == pytest.approx(0.48145466 * 255)
    assert clip.model.data_preprocessor.std[0] == pytest.approx(0.26862954 * 255)


DEMO_STUDENT = osp.join(REPO, 'work_dirs', 'demo', 'student_backbone.pth')


@pytest.mark.skipif(not osp.isfile(DEMO_STUDENT), reason='no distilled demo student (run `make demo`)')
def test_demo_student_loads_into_demo_backbone():
    """The real distilled student (shared RPB, 8 x 8 patches, final norm) fits the demo's 16 x 16 backbone."""
    from mmengine.registry import MODELS, DefaultScope
    backbone_cfg = load(DEMO_CONFIG).model.backbone
    assert backbone_cfg.init_cfg.checkpoint == osp.relpath(DEMO_STUDENT, REPO)
    backbone_cfg.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MODELS.build(backbone_cfg)
    student = torch.load(DEMO_STUDENT, weights_only=True)['state_dict']
    backbone.load_state_dict(student, strict=True)  # raises on any missing or unexpected key
    shared = student['rel_pos_bias.relative_position_bias_table']
    resized = geometric_resize_rel_pos_bias_table(shared, (8, 8), (16, 16))
    torch.testing.assert_close(backbone.layers[5].attn.rel_pos_bias.relative_position_bias_table, resized)
    with torch.no_grad():
        feats = backbone.eval()(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 192, 16, 16)] * 4
