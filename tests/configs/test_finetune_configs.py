"""Fine-tuning configs (configs/finetune_in1k/ and the digits demo) build and train one short epoch at tiny size.

The recipes are kept (pipelines, batch augments, losses, schedules, layer decay, EMA); the backbone is shrunk,
its init checkpoint is a tiny distilled student / CLIP tower converted by our converters, and the data is a
tiny labelled image folder. A last test fine-tunes on real digits and checks the accuracy beats chance.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..helpers.config_lists import ALL_CONFIGS, REPO, assert_inferencers_find_the_loader, is_classification_config
from ..helpers.schedules import scheduled_lrs
from ..helpers.scripts import load_script
from ..helpers.tiny_finetune_configs import CLASSES, TINY, shrink

FT_CONFIGS = [p for p in ALL_CONFIGS if is_classification_config(p)]

pytestmark = pytest.mark.usefixtures('one_thread')

# Trained for one short epoch: one config per distinct recipe / backbone (the others differ from these by
# numbers only and are built by test_finetune_config_builds). mmengine formats the whole config with yapf for
# each log / checkpoint (~2 s each here), so the trained runs skip checkpoints.
TRAINED = [
    'configs/finetune_in1k/fd-clip-vit-b16_16xb128-100e_in1k.py',
    'configs/finetune_in1k/fd-clip-vit-l14_16xb128-ema-30e_in1k.py',
    'configs/finetune_in1k/clip-vit-b16_16xb128-ema-50e_in1k.py',
    'configs/finetune_in1k/clip-vit-l14_16xb128-50e_in1k.py',
    'configs/finetune_in1k/fd-esvit-swinv2-b-w14_16xb64-100e_in1k.py',
]


@pytest.mark.parametrize('config', FT_CONFIGS)
def test_finetune_config_builds(config, tmp_path):
    """Model (with its converted init checkpoint loaded), datasets and layer-decay optimizer of every config."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DATASETS, MODELS, DefaultScope, init_default_scope
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    assert_inferencers_find_the_loader(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        init_default_scope(cfg.default_scope)
        import fdclip_mm  # noqa: F401  (custom_imports)
        model = MODELS.build(cfg.model)
        model.init_weights()
        if model.backbone.init_cfg:
            saved = torch.load(model.backbone.init_cfg['checkpoint'], weights_only=True)['state_dict']
            prefix = model.backbone.init_cfg.get('prefix', '')
            for name, value in model.backbone.state_dict().items():
                torch.testing.assert_close(value, saved[prefix + name], rtol=0, atol=0, msg=name)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        assert len(DATASETS.build(cfg.train_dataloader.dataset)) == CLASSES
        sample = DATASETS.build(cfg.val_dataloader.dataset)[0]
    assert tuple(sample['inputs'].shape[-2:]) == (cfg.model.backbone.img_size, ) * 2
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    scales = sorted({g['lr_scale'] for g in optim_wrapper.optimizer.param_groups})
    depths = cfg.model.backbone.arch['depths'] if 'Swin' in cfg.model.backbone.type else [TINY['num_layers']]
    assert scales == pytest.approx([rate**k for k in range(sum(depths) + 1, -1, -1)])


@pytest.mark.slow
@pytest.mark.parametrize('config', TRAINED)
def test_finetune_config_trains(config, tmp_path):
    cfg = shrink(Config.fromfile(osp.join(REPO, config)), tmp_path)
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    assert hub.get_scalar('train/loss').current() > 0
    assert 0 <= hub.get_scalar('val/accuracy/top1').current() <= 100
    if any(h.type == 'EMAHook' for h in cfg.get('custom_hooks', [])):
        assert 'val/accuracy/top1_origin' in hub.log_scalars  # raw weights evaluated too
        assert hub.get_info('best/accuracy/top1_origin') == hub.get_scalar('val/accuracy/top1_origin').current()
        assert hub.get_info('best/accuracy/top1') is not None


def load(name: str) -> Config:
    return Config.fromfile(osp.join(REPO, 'configs', 'finetune_in1k', name))


def test_finetune_configs_encode_table_5_and_appendix_f():
    cfg = load('fd-clip-vit-b16_16xb128-100e_in1k.py')
    optim = cfg.optim_wrapper
    assert optim.constructor == 'fdclip_mm.LayerDecayOptimWrapperConstructor'
    assert optim.optimizer == dict(type='AdamW', lr=5e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    assert optim.clip_grad.max_norm == 5.0 and 'rel_pos_bias_decay_mult' not in optim.paramwise_cfg
    assert cfg.auto_scale_lr.base_batch_size == 2048 == cfg.train_dataloader.batch_size * 16
    assert cfg.train_cfg.max_epochs == 100
    backbone, head = cfg.model.backbone, cfg.model.head
    assert (backbone.pos_embed, backbone.out_type, backbone.final_norm) == ('rpb', 'avg_featmap', False)
    assert head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert head.init_cfg.std == pytest.approx(0.02 * 0.001)
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert (pipeline['RandAugment'].magnitude_level, pipeline['RandAugment'].magnitude_std) == (9, 0.5)
    assert pipeline['RandomErasing'].erase_prob == 0.25 and 'RepeatAugSampler' not in str(cfg.train_dataloader)

    # each student gets the official recipe of its distillation run
    official = {  # config: (distillation config, drop path, layer decay), from the official yaml files
        'fd-clip-vit-b16_16xb128-100e_in1k.py': ('fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py', 0.3, 0.6),
        'fd-clip-vit-b16-fd100e_16xb128-100e_in1k.py': ('fd_clip-vit-b16_fdvit-b16-dp0.1_16xb128-100e_in1k.py', 0.1,
                                                        0.65),
        'fd-clip-vit-l14_16xb128-50e_in1k.py': ('fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k.py', 0.4, 0.75),
    }
    for name, (distill, dp, rate) in official.items():
        leaf = load(name)
        assert leaf.distill_config == f'configs/fd/{distill}' and osp.isfile(osp.join(REPO, leaf.distill_config))
        assert (leaf.model.backbone.drop_path_rate, leaf.optim_wrapper.paramwise_cfg.layer_decay_rate) == (dp, rate)
    assert load('fd-clip-vit-b16_16xb128-dp0.2-100e_in1k.py').model.backbone.drop_path_rate == 0.2
    other = load('fd-clip-vit-b16_16xb128-lr6e-3-100e_in1k.py')
    assert (other.optim_wrapper.optimizer.lr, other.optim_wrapper.paramwise_cfg.layer_decay_rate) == (6e-3, 0.6)

    # timm's schedule, as the official code: every group warms up from and anneals to the same absolute lr
    # (B/16: 1e-6, L/14: 2e-6 at batch 2048), whatever its layer-decay scale; --auto-scale-lr scales all of it
    epoch = 10
    for leaf, floor in ((cfg, 1e-6), (other, 1e-6), (load('fd-clip-vit-l14_16xb128-50e_in1k.py'), 2e-6)):
        lr, rate = leaf.optim_wrapper.optimizer.lr, leaf.optim_wrapper.paramwise_cfg.layer_decay_rate
        warmup_end, max_epochs = leaf.param_scheduler[0].end, leaf.train_cfg.max_epochs
        groups = [dict(lr=lr, lr_scale=1.0), dict(lr=lr * rate**5, lr_scale=rate**5)]
        for ratio in (1.0, 0.5):
            start, peak, end = scheduled_lrs(
                leaf.param_scheduler, groups, epoch, [0, warmup_end * epoch, max_epochs * epoch - 1], batch_ratio=ratio)
            assert start == pytest.approx([floor * ratio] * 2)
            assert peak == pytest.approx([lr * ratio, lr * rate**5 * ratio])
            assert end == pytest.approx([floor * ratio] * 2, rel=0.05)  # last iteration: within 5% of the floor

    for prefix in ('fd-clip', 'clip'):
        large = load(f'{prefix}-vit-l14_16xb128-50e_in1k.py')
        backbone = large.model.backbone
        assert (backbone.arch, backbone.patch_size, backbone.drop_path_rate) == ('large', 14, 0.4)
        assert (large.optim_wrapper.optimizer.lr, large.optim_wrapper.paramwise_cfg.layer_decay_rate) == (1e-3, 0.75)
        assert (large.param_scheduler[0].end, large.train_cfg.max_epochs) == (5, 50)
        ema = load(f'{prefix}-vit-b16_16xb128-ema-50e_in1k.py')
        hooks = {h.type: h for h in ema.custom_hooks}
        assert hooks['EMAHook'].momentum == pytest.approx(2e-4) and hooks['EMAHook'].evaluate_on_origin
        assert (ema.optim_wrapper.optimizer.lr, ema.optim_wrapper.paramwise_cfg.layer_decay_rate) == (6e-4, 0.6)
        assert ema.train_cfg.max_epochs == 50 and ema.model.train_cfg is None

    clip = load('clip-vit-b16_16xb128-100e_in1k.py').model
    assert clip.backbone.type == 'VisionTransformer' and clip.backbone.pre_norm
    assert clip.backbone.layer_cfgs.act_cfg.type == 'mmpretrain.QuickGELU'
    assert clip.data_preprocessor.mean[0] == pytest.approx(0.48145466 * 255)


def digits_wheel():
    module = load_script('scripts/fetch_digits.py')
    wheel = module.find_wheel(module.download_dir())
    if wheel is None:
        pytest.skip('scikit-learn wheel not downloaded (run scripts/fetch_digits.py)')
    return module, wheel


@pytest.mark.slow
def test_digits_fine_tuning_beats_chance(tmp_path):
    """A very small version of `make finetune-digits`: 400 real digits, a few epochs, accuracy >> 10%."""
    fetch, wheel = digits_wheel()
    n_train, n_val = fetch.write_digits(wheel, str(tmp_path / 'digits'), limit=400)
    assert (n_train, n_val) == (320, 80)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'finetune_fdvit-t8-4l_digits.py'))
    epochs = 8
    cfg.model.backbone.arch = dict(embed_dims=48, num_layers=2, num_heads=2, feedforward_channels=96)
    cfg.model.backbone.drop_path_rate = 0.
    cfg.model.backbone.patch_size = 16  # 2 x 2 tokens: each a quadrant of the digit
    cfg.optim_wrapper.optimizer.lr = 4e-3
    cfg.model.head.in_channels = 48
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = str(tmp_path / 'digits')
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.train_dataloader.batch_size = 32
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].update(begin=1, end=epochs, T_max=epochs - 1)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    cfg.custom_hooks[0].momentum = 0.05
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    raw, ema = (hub.get_scalar(f'val/accuracy/top1{s}').current() for s in ('_origin', ''))
    assert raw > 40 and ema > 25, (raw, ema)  # chance: 10
