"""NYUv2 depth configs (configs/depth_nyuv2/, the depth demo): build, load the init checkpoint, train, test.

The recipes are kept (pipelines, two-window test, head, loss, layer decay, schedule, DepthMetric); the
backbone is shrunk to 4 layers of width 32 with crops of 2 x 2 patches, its init checkpoint is a tiny
distilled student / CLIP tower converted as the configs' headers say, and the data is a synthetic NYU-layout
folder of 64 x 48 frames.
"""
import copy
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from fdclip_mm.converters import save_state_dict
from fdclip_mm.converters.clip_to_vit import clip_to_vit_state_dict
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.backbones.rel_pos_bias import geometric_resize_rel_pos_bias_table, infer_grid
from ..helpers.checkpoints import clip_visual_state_dict, tiny_vit_arch
from ..helpers.config_lists import ALL_CONFIGS, REPO, assert_inferencers_find_the_loader

DEPTH_CONFIGS = [p for p in ALL_CONFIGS if osp.basename(p).startswith('depth_')]
TINY = tiny_vit_arch(32, 4, 2)

pytestmark = pytest.mark.usefixtures('one_thread')


def test_every_depth_config_is_collected():
    assert sorted(osp.basename(p) for p in DEPTH_CONFIGS) == [
        'depth_clip-vit-b16_glp_8xb3-25e_nyu-480x480.py', 'depth_fd-clip-vit-b16_glp_8xb3-25e_nyu-480x480.py',
        'depth_fdvit-t14-6l_middlebury-nyu.py'
    ]


def write_nyu_folder(root: str) -> str:
    """NYU layout (images/{train,test}/*.jpg, annotations/{train,test}/*.png in mm), two 64 x 48 frames."""
    rng = np.random.default_rng(0)
    for split, index in (('train', 0), ('test', 1)):
        img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        depth = (1000 + 100 * np.arange(64)[None, :] + 20 * np.arange(48)[:, None]).astype(np.uint16)
        depth[:4] = 0  # unmeasured
        mmcv.imwrite(img, osp.join(root, 'images', split, f'bedroom_{index:05d}.jpg'))
        mmcv.imwrite(depth, osp.join(root, 'annotations', split, f'bedroom_{index:05d}.png'))
    return root


def tiny_init_checkpoint(backbone, path: str) -> dict:
    """The config's init file, shrunk: a distilled student (shared RPB) or a CLIP tower converted with
    ln_post, made for a 3 x 3 patch grid so that loading also resizes the RPB tables / position embedding."""
    patch = backbone.patch_size
    if backbone.type == 'fdclip_mm.FDViT':
        state = FDViT(arch=TINY, img_size=3 * patch, patch_size=patch, pos_embed='shared_rpb').state_dict()
    elif backbone.type == 'mmpretrain.VisionTransformer':
        visual = clip_visual_state_dict(width=32, layers=TINY['num_layers'], patch=patch, image=3 * patch)
        state = clip_to_vit_state_dict({
            k[len('visual.'):]: v
            for k, v in visual.items()
        },
                                       final_norm=True,
                                       head_norm=False)
    else:
        raise NotImplementedError(backbone.type)
    save_state_dict(state, path)
    backbone.init_cfg.checkpoint = path
    return state


def shrink(cfg: Config, tmp_path) -> Config:
    model = cfg.model
    backbone, head = model.backbone, model.decode_head
    crop = 2 * backbone.patch_size
    n_out = len(backbone.out_indices)
    backbone.arch = TINY
    backbone.img_size = (crop, crop)
    backbone.out_indices = tuple(range(TINY['num_layers'] - n_out, TINY['num_layers']))
    head.in_channels = [TINY['embed_dims']] * n_out
    head.channels = 8
    model.data_preprocessor.size = (crop, crop)
    model.test_cfg.crop_size = (crop, crop)
    root = write_nyu_folder(str(tmp_path / 'nyu'))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        for t in loader.dataset.pipeline:
            if t.type == 'RandomCrop':
                t.crop_size = (crop, crop)
            elif t.type == 'Resize':
                # 64 x 48 -> 43 x 32 (patch 16) or 37 x 28 (patch 14): two test windows
                t.scale = (2000, crop)
        loader.dataset.data_root = root
        loader.batch_size = 2 if loader is cfg.train_dataloader else 1
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = None  # mmengine formats the whole config for every checkpoint (slow here)
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path / 'work_dir')
    return cfg


@pytest.mark.parametrize('config', DEPTH_CONFIGS)
def test_depth_config_loads_its_init_checkpoint_exactly(config, tmp_path):
    """Zero missing / unexpected keys; init_cfg loads the same values; layer decay covers all depths."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    assert_inferencers_find_the_loader(cfg)
    state = tiny_init_checkpoint(cfg.model.backbone, str(tmp_path / 'init.pth'))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        init_default_scope(cfg.default_scope)
        model = MODELS.build(cfg.model)
        result = model.backbone.load_state_dict(copy.deepcopy(state), strict=True)
        assert (result.missing_keys, result.unexpected_keys) == ([], [])
        model.init_weights()  # the config's own path: init_cfg=Pretrained
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    loaded = model.backbone.state_dict()
    grid = (2, 2)
    for key, value in state.items():
        if key == 'rel_pos_bias.relative_position_bias_table':  # shared -> every layer, resized 3x3 -> 2x2
            expected = geometric_resize_rel_pos_bias_table(value, infer_grid(value.shape[0]), grid)
            for i in range(TINY['num_layers']):
                key = f'layers.{i}.attn.rel_pos_bias.relative_position_bias_table'
                torch.testing.assert_close(loaded[key], expected)
        elif key == 'pos_embed':
            assert loaded[key].shape == (1, 1 + 4, TINY['embed_dims'])
        elif not key.endswith('relative_position_index'):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    scales = sorted({g['lr_scale'] for g in optim_wrapper.optimizer.param_groups})
    assert scales == pytest.approx([rate**k for k in range(TINY['num_layers'] + 1, -1, -1)])


@pytest.mark.slow
@pytest.mark.parametrize('config', DEPTH_CONFIGS)
def test_depth_config_trains_and_evaluates(config, tmp_path):
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    tiny_init_checkpoint(cfg.model.backbone, str(tmp_path / 'init.pth'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    loss = hub.get_scalar('train/decode.loss_silog').current()
    assert np.isfinite(loss) and loss > 0
    rmse, d1 = hub.get_scalar('val/rmse').current(), hub.get_scalar('val/d1').current()
    assert np.isfinite(rmse) and rmse > 0 and 0 <= d1 <= 1
    # the test windows: crop x crop at both ends of the resized frame, predicted at the frame's original size
    model = runner.model.eval()
    batch = next(iter(runner.val_loop.dataloader))
    with torch.no_grad():
        sample = model.test_step(batch)[0]
    assert sample.pred_depth_map.shape == (48, 64)
    pred = sample.pred_depth_map.data
    assert (pred > 0).all() and (pred < cfg.model.decode_head.max_depth).all()


def load(name: str) -> Config:
    return Config.fromfile(osp.join(REPO, 'configs', 'depth_nyuv2', name))


def scheduled_lrs(cfg: Config) -> list:
    """The lr of every iteration of the config's schedule, for a base lr of ``optimizer.lr``."""
    from mmengine.optim.scheduler import LinearLR
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = []
    for s in cfg.param_scheduler:
        s = dict(s)
        assert s.pop('type') == 'LinearLR'
        schedulers.append(LinearLR(optimizer, **s))
    lrs = []
    for _ in range(cfg.train_cfg.max_iters):
        lrs.append(optimizer.param_groups[0]['lr'])
        for s in schedulers:
            s.step()
    return lrs


@pytest.mark.parametrize(
    'name', ['depth_fd-clip-vit-b16_glp_8xb3-25e_nyu-480x480.py', 'depth_clip-vit-b16_glp_8xb3-25e_nyu-480x480.py'])
def test_depth_configs_encode_the_mim_depth_recipe(name):
    cfg = load(name)
    model = cfg.model
    assert model.type == 'fdclip_mm.TwoWindowDepthEstimator'
    assert model.test_cfg == dict(mode='two_window', crop_size=(480, 480), flip=True)
    head = model.decode_head
    assert (head.type, head.num_deconv, head.num_filters, head.max_depth, head.loss_decode) == \
        ('fdclip_mm.GLPDepthHead', 3, (32, 32, 32), 10.0, dict(type='SiLogLoss'))
    assert (head.in_index, head.feature_stride, head.in_channels) == (3, 16, [768] * 4)
    backbone = model.backbone
    assert (backbone.img_size, backbone.patch_size, backbone.out_type, backbone.out_indices) == \
        ((480, 480), 16, 'featmap', (3, 5, 7, 11))
    assert (backbone.final_norm, backbone.drop_path_rate) == (True, 0.3)
    if name.startswith('depth_fd'):
        assert (backbone.type, backbone.pos_embed, backbone.layer_scale_init_value) == \
            ('fdclip_mm.FDViT', 'rpb', 0.1)
        assert backbone.init_cfg.checkpoint == 'data/weights/fd/fd-clip-vit-b16_backbone.pth'
        assert model.data_preprocessor.mean == [123.675, 116.28, 103.53]
    else:
        assert (backbone.type, backbone.pre_norm, backbone.qkv_bias) == \
            ('mmpretrain.VisionTransformer', True, True)
        assert backbone.layer_cfgs.act_cfg.type == 'mmpretrain.QuickGELU' and backbone.norm_cfg.eps == 1e-5
        assert model.data_preprocessor.std == [68.5005327, 66.6321579, 70.32316305]
    assert model.data_preprocessor.seg_pad_val == 0

    pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert pipeline['RandomDepthMix'].prob == 0.25 and pipeline['RandomFlip'].prob == 0.5
    assert pipeline['RandomCrop'].crop_size == (480, 480)
    assert pipeline['LoadDepthAnnotation'].depth_rescale_factor == 1e-3
    assert (cfg.train_dataloader.batch_size * 8, cfg.auto_scale_lr.base_batch_size) == (24, 24)
    assert cfg.val_evaluator == dict(
        type='DepthMetric', min_depth_eval=1e-3, max_depth_eval=10.0, crop_type='nyu_crop', _scope_='mmseg')

    optim = cfg.optim_wrapper
    assert optim.constructor == 'fdclip_mm.LayerDecayOptimWrapperConstructor'
    assert optim.optimizer == dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    assert optim.paramwise_cfg.layer_decay_rate == 0.9 and 'clip_grad' not in optim
    assert cfg.train_cfg.max_iters == 25 * (24231 // 24)
    lrs = scheduled_lrs(cfg)
    half = cfg.train_cfg.max_iters // 2
    # up from 3e-5 to 5e-4 over the first half, back down to 3e-5 over the second
    assert (lrs[0], lrs[half - 1], lrs[half], lrs[-1]) == pytest.approx((3e-5, 5e-4, 5e-4, 3e-5))
    assert all(a < b for a, b in zip(lrs[:half - 1], lrs[1:half]))
    assert all(a > b for a, b in zip(lrs[half:-1], lrs[half + 1:]))
