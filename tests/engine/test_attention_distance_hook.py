"""AttentionDistanceHook on a tiny distillation run: logs per-layer distances at the right epochs."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from fdclip_mm.engine import AttentionDistanceHook
from ..helpers.config_lists import REPO
from ..helpers.tiny_fd_configs import shrink


@pytest.mark.slow
def test_hook_logs_distances_every_n_epochs_and_at_the_end(tmp_path):
    cfg = shrink(Config.fromfile(osp.join(REPO, 'configs', 'demo', 'fd_dinov2-vits14_fdvit-t14-6l_demo.py')), tmp_path)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=3)
    cfg.param_scheduler = []
    cfg.custom_hooks = [dict(type='fdclip_mm.AttentionDistanceHook', interval=2, num_images=2, per_head=True)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, AttentionDistanceHook))
    assert hook._inputs.shape == (2, 3, 112, 112)
    scalars = glob.glob(osp.join(cfg.work_dir, '*', 'vis_data', 'scalars.json'))[0]
    with open(scalars) as f:
        logged = [json.loads(line) for line in f if 'attention_distance/layer_0' in line]
    assert [r['step'] for r in logged] == [2, 3]
    layers = runner.model.student.num_layers
    record = logged[-1]
    assert all(f'attention_distance/layer_{i}' in record for i in range(layers))
    heads = [record[f'attention_distance/layer_1_head_{h}'] for h in range(runner.model.student.num_heads)]
    assert record['attention_distance/layer_1'] == pytest.approx(sum(heads) / len(heads), rel=1e-5)
    assert record['attention_distance/layer_1_spread'] == pytest.approx(max(heads) - min(heads), abs=1e-5)
    # the logged value is what the hook measures on its probe images
    runner.model.train()
    expected = hook.measure(runner)
    assert runner.model.student.training  # measured in eval mode, training mode restored
    assert record['attention_distance/layer_0'] == pytest.approx(expected[0].mean().item(), rel=1e-4)
    assert 0 < expected.min() and expected.max() < 112 * 2**0.5


def test_hook_rejects_bad_arguments():
    with pytest.raises(ValueError):
        AttentionDistanceHook(interval=0)
    with pytest.raises(ValueError):
        AttentionDistanceHook(num_images=0)
