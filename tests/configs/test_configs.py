"""Every distillation config builds and runs one short epoch (and a validation pass) at tiny size.

The real recipes are kept (pipelines, schedules, optimizer settings, loss); only the model widths, the
teacher file (a random checkpoint in the published layout), the data folder and the number of iterations
are shrunk.
"""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..helpers.config_lists import ALL_CONFIGS, REPO, assert_inferencers_find_the_loader, is_distillation_config
from ..helpers.schedules import scheduled_lrs
from ..helpers.tiny_fd_configs import shrink

CONFIGS = [p for p in ALL_CONFIGS if is_distillation_config(p)]


@pytest.mark.slow
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


@pytest.mark.slow
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
