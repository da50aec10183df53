"""The training loader's settings logged at the start of a run, and whether (and by how much) the steps wait for it."""
import glob
import os.path as osp
import time

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

from fdclip_mm.engine import LoaderReportHook
from fdclip_mm.engine.loader_report_hook import loader_settings, throughput_verdict


def test_throughput_verdict_gives_the_rates_and_the_workers_needed():
    assert throughput_verdict(0.01, 1.0, 128, 8, max_wait=0.05) is None  # 1% waiting: keeps up
    verdict = throughput_verdict(0.5, 1.0, 128, 4, max_wait=0.05)  # half the time waiting for 4 workers
    assert '50% of the time' in verdict and '128 images/s per rank, 32 per worker' in verdict
    assert 'the step alone would take 256 images/s, which needs 8 workers per rank' in verdict
    assert 'set train_dataloader.num_workers' in throughput_verdict(0.3, 1.0, 10, 0, max_wait=0.05)


def test_loader_settings_name_what_sets_the_throughput():
    data = list(range(8))
    text = loader_settings(DataLoader(data, batch_size=4, num_workers=2, prefetch_factor=3, persistent_workers=True), 8)
    assert text == ('2 worker process(es) per rank x 8 rank(s), batch 4, 3 batches prefetched per worker, '
                    'persistent workers, pageable host memory')
    assert loader_settings(DataLoader(data, batch_size=2), 1).startswith('no worker process')


class SlowImages(Dataset):
    """Images that take 20 ms each to load, for a model whose step takes microseconds."""

    def __len__(self):
        return 64

    def __getitem__(self, index):
        time.sleep(0.02)
        return dict(inputs=torch.zeros(3))


class Tiny(BaseModel):

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(
            loss=(torch.stack(inputs) * self.weight).sum() if isinstance(inputs, list) else (inputs *
                                                                                             self.weight).sum())


@pytest.mark.slow
def test_a_loader_bound_run_is_reported_with_its_rate_per_worker(tmp_path):
    runner = Runner(
        model=Tiny(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=SlowImages(),
            batch_size=2,
            num_workers=1,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=[LoaderReportHook(skip=2, window=8)],
        experiment_name='loader_report')
    runner.train()
    log = open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]).read()
    assert ('training loader: 1 worker process(es) per rank x 1 rank(s), batch 2, 2 batches prefetched per '
            'worker, workers restarted every epoch, pageable host memory') in log
    assert 'WARNING - loader-bound run: the training steps wait for data' in log
    assert 'per worker; the step alone would take' in log and '(iterations 3-10)' in log
