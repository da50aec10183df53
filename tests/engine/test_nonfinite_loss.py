"""A non-finite loss stops training naming the iteration, or (``optim_wrapper.nonfinite_loss='skip'``) skips the
step without any update: the policy of our optimizer wrapper constructors, for any wrapper and model."""
import hashlib
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from ..helpers.config_lists import REPO
from ..helpers.distiller import batch, build, optim_wrapper, poison_loss
from ..helpers.tiny_fd_configs import shrink

FD_CONFIG = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')


def test_nonfinite_loss_raises_naming_the_iteration(tiny_clip_checkpoint):
    model = build(tiny_clip_checkpoint).train()
    optim = optim_wrapper(model)  # 'raise' by default
    MessageHub.get_current_instance().update_info('iter', 6)
    poison_loss(model)
    message = r'non-finite loss at training iteration 7 \(runner.iter 6\)'
    with pytest.raises(FloatingPointError, match=message):
        model.train_step(batch(), optim)
    assert all(p.grad is None for p in model.parameters())


def test_nonfinite_loss_skip_leaves_weights_and_optimizer_unchanged(tiny_clip_checkpoint):
    torch.manual_seed(0)
    model = build(tiny_clip_checkpoint).train()
    optim = optim_wrapper(model, nonfinite_loss='skip')
    assert 'loss' in model.train_step(batch(), optim)  # a good step: AdamW state exists from here on
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    steps = [float(s['step']) for s in optim.optimizer.state.values()]
    real_loss = model.loss
    poison_loss(model)
    for seed in (1, 2):
        assert torch.isnan(model.train_step(batch(seed=seed), optim)['loss'])  # logged as it was
    assert optim.skipped_nonfinite_steps == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert [float(s['step']) for s in optim.optimizer.state.values()] == steps
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    model.loss = real_loss
    log_vars = model.train_step(batch(seed=3), optim)
    projector = 'branches.t0.projector.weight'
    assert torch.isfinite(log_vars['loss']) and not torch.equal(model.state_dict()[projector], weights[projector])


def test_bad_nonfinite_loss_mode_is_a_build_error(tiny_clip_checkpoint):
    model = build(tiny_clip_checkpoint)
    with pytest.raises(ValueError, match=r"optim_wrapper.nonfinite_loss must be one of \('raise', 'skip'\)"):
        optim_wrapper(model, nonfinite_loss='ignore')


def test_the_policy_fits_every_wrapper_and_the_layer_decay_constructor(tiny_clip_checkpoint):
    """mmengine's AMP wrapper keeps its own behaviour and type; fine-tuning's constructor applies it too."""
    from mmengine.optim import AmpOptimWrapper

    from fdclip_mm.engine import CPUAmpOptimWrapper
    from fdclip_mm.engine.nonfinite_loss import NonFiniteLossPolicy
    model = build(tiny_clip_checkpoint).train()
    amp = optim_wrapper(model, type='fdclip_mm.CPUAmpOptimWrapper', dtype='auto', nonfinite_loss='skip')
    assert isinstance(amp, CPUAmpOptimWrapper) and isinstance(amp, AmpOptimWrapper)
    assert isinstance(amp, NonFiniteLossPolicy) and type(amp).__name__ == 'CPUAmpOptimWrapper'
    poison_loss(model)
    assert torch.isnan(model.train_step(batch(), amp)['loss']) and amp.skipped_nonfinite_steps == 1
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # whatever scope earlier tests left
        classifier = ImageClassifier(
            backbone=dict(
                type='fdclip_mm.FDViT',
                arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                img_size=32,
                patch_size=8,
                out_type='avg_featmap',
                final_norm=False),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32))
    layer_decay = build_optim_wrapper(
        classifier,
        dict(
            optimizer=dict(type='AdamW', lr=1e-3),
            constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.9)))
    assert isinstance(layer_decay, NonFiniteLossPolicy) and layer_decay.nonfinite_loss == 'raise'
    with pytest.raises(FloatingPointError, match='non-finite loss'):
        layer_decay.update_params(torch.tensor(float('inf'), requires_grad=True))


def test_the_policy_is_in_the_wrapper_the_config_names(tiny_clip_checkpoint):
    """Registered wrappers: ours with the policy (our constructors' default), mmengine's as it is."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import OPTIM_WRAPPERS

    from fdclip_mm.engine import CheckedAmpOptimWrapper, CheckedOptimWrapper
    from fdclip_mm.engine.nonfinite_loss import NonFiniteLossPolicy
    assert OPTIM_WRAPPERS.get('fdclip_mm.CheckedOptimWrapper') is CheckedOptimWrapper
    assert OPTIM_WRAPPERS.get('fdclip_mm.CheckedAmpOptimWrapper') is CheckedAmpOptimWrapper
    model = build(tiny_clip_checkpoint).train()
    assert type(optim_wrapper(model)) is CheckedOptimWrapper
    named = optim_wrapper(model, type='fdclip_mm.CheckedOptimWrapper', nonfinite_loss='skip')
    assert type(named) is CheckedOptimWrapper and named.nonfinite_loss == 'skip'
    plain = optim_wrapper(model, type='OptimWrapper')
    assert type(plain) is OptimWrapper and not isinstance(plain, NonFiniteLossPolicy)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonfinite_loss'"):
        optim_wrapper(model, type='OptimWrapper', nonfinite_loss='skip')


@pytest.mark.slow
def test_runner_stops_and_last_good_checkpoint_stays_intact(tmp_path):
    cfg = shrink(Config.fromfile(FD_CONFIG), tmp_path)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='fdclip_mm.AtomicCheckpointHook', interval=2, by_epoch=False)
    cfg.param_scheduler = []
    runner = Runner.from_cfg(cfg)
    poison_loss(runner.model, from_iter=2)
    ckpt = osp.join(cfg.work_dir, 'iter_2.pth')
    seen = {}
    real_train_step = runner.model.train_step

    def train_step(data, optim_wrapper):
        if MessageHub.get_current_instance().get_info('iter') == 2:  # iter_2.pth was just written
            seen['hash'] = hashlib.sha256(open(ckpt, 'rb').read()).hexdigest()
        return real_train_step(data, optim_wrapper)

    runner.model.train_step = train_step
    with pytest.raises(FloatingPointError, match=r'training iteration 3 \(runner.iter 2\)'):
        runner.train()
    assert hashlib.sha256(open(ckpt, 'rb').read()).hexdigest() == seen['hash']
    assert open(osp.join(cfg.work_dir, 'last_checkpoint')).read().strip() == ckpt
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert state['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in state['state_dict'].values())
    assert not osp.exists(osp.join(cfg.work_dir, 'iter_4.pth'))
