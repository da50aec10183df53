"""A tiny self-contained mmengine model, dataset, metric and hook for testing the tools.

Imported by toy configs through ``custom_imports=dict(imports=['toy_modules'])`` (the test puts this
directory on ``PYTHONPATH``). Registered in mmengine's root registries, so the configs use
``default_scope='mmengine'``.
"""
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from torch.utils.data import Dataset

IN_DIM = 4
OUT_DIM = 2


@MODELS.register_module()
class FdclipToyModel(BaseModel):
    """``Linear`` regression trained with an MSE loss."""

    def __init__(self, data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.linear = nn.Linear(IN_DIM, OUT_DIM)

    def forward(self, inputs: torch.Tensor, targets: Optional[torch.Tensor] = None, mode: str = 'tensor'):
        pred = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=F.mse_loss(pred.float(), targets))
        if mode == 'predict':
            return [dict(pred=p.float(), target=t) for p, t in zip(pred, targets)]
        return pred


@DATASETS.register_module()
class FdclipToyDataset(Dataset):
    """Fixed synthetic regression data (independent of the global random state)."""

    def __init__(self, length: int = 32, seed: int = 0) -> None:
        rng = np.random.RandomState(seed)
        weight = np.arange(IN_DIM * OUT_DIM, dtype=np.float32).reshape(IN_DIM, OUT_DIM) / 4
        self.inputs = torch.from_numpy(rng.randn(length, IN_DIM).astype(np.float32))
        self.targets = self.inputs @ torch.from_numpy(weight)
        self.metainfo = dict(classes=('toy', ))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        return dict(inputs=self.inputs[idx], targets=self.targets[idx])


@METRICS.register_module()
class FdclipToyMetric(BaseMetric):
    """Mean squared error, returned as a numpy float64 (so ``best_score`` is a numpy scalar)."""

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(((sample['pred'] - sample['target'])**2).mean().item())

    def compute_metrics(self, results: List[float]) -> Dict[str, float]:
        return dict(mse=np.mean(np.asarray(results, dtype=np.float64)))


@HOOKS.register_module()
class FdclipDumpWeightsHook(Hook):
    """Save the model's final state dict to ``work_dir/weights_rank{rank}.pth`` on every rank."""

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(runner.work_dir, f'weights_rank{get_rank()}.pth'))


@HOOKS.register_module()
class FdclipWaitForFileHook(Hook):
    """Waits before the first step until the file ``path`` exists: a test acts while the run holds its work dir.

    Args:
        path: The file to wait for.
        timeout: Seconds after which the run stops with ``TimeoutError``.
    """

    def __init__(self, path: str, timeout: float = 300.) -> None:
        self.path, self.timeout = path, timeout

    def before_train(self, runner) -> None:
        deadline = time.time() + self.timeout
        while not osp.exists(self.path):
            if time.time() > deadline:
                raise TimeoutError(f'{self.path} did not appear within {self.timeout} s')
            time.sleep(0.05)


TOY_CONFIG = """\
custom_imports = dict(imports=['toy_modules'], allow_failed_imports=False)
default_scope = 'mmengine'
model = dict(type='FdclipToyModel')
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='FdclipToyDataset', length=32, seed=0))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='FdclipToyDataset', length=16, seed=1))
test_dataloader = val_dataloader
val_evaluator = dict(type='FdclipToyMetric')
test_evaluator = val_evaluator
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.05, weight_decay=0.01))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=8, begin=0, end=8, by_epoch=False, eta_min=1e-3)]
auto_scale_lr = dict(base_batch_size=4, enable=False)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=2),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=4, by_epoch=False, save_best='mse', rule='less'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='FdclipDumpWeightsHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=True)
# 'nccl' on purpose: on CPU, fdclip_mm.engine.prepare_cpu_distributed replaces it by 'gloo'
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
"""


def write_toy_config(path: str, max_iters: int = 8) -> str:
    """Write the toy training config to ``path`` and return ``path``.

    Args:
        path: Where to write the ``.py`` config.
        max_iters: Training iterations (checkpoints and validation every 4).

    Returns:
        str: ``path``.
    """
    with open(path, 'w') as f:
        f.write(TOY_CONFIG.format(max_iters=max_iters))
    return path


@HOOKS.register_module()
class FdclipShardReportHook(Hook):
    """Write ``work_dir/shards_rank{rank}.json``: this rank's local and the full numbers of trained parameter
    and AdamW-state values (a sharded ``DTensor`` counts its local shard)."""

    def after_train(self, runner) -> None:
        import json

        def local(t):
            return t.to_local().numel() if hasattr(t, 'to_local') else t.numel()

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        trained = [p for p in model.parameters() if p.requires_grad]
        moments = [s[k] for s in runner.optim_wrapper.optimizer.state.values() for k in ('exp_avg', 'exp_avg_sq')]
        report = dict(
            params_local=sum(map(local, trained)),
            params_full=sum(p.numel() for p in trained),
            optim_local=sum(map(local, moments)),
            optim_full=sum(m.numel() for m in moments))
        with open(osp.join(runner.work_dir, f'shards_rank{get_rank()}.json'), 'w') as f:
            json.dump(report, f)
