"""Validation metric of a distillation run: the mean distillation loss over held-out images."""
from typing import List, Sequence

import torch
from mmengine.evaluator import BaseMetric

from fdclip_mm.registry import METRICS


@METRICS.register_module()
class DistillLossMetric(BaseMetric):
    """Averages the per-image ``distill_loss`` that :class:`FeatureDistiller` writes in ``predict`` mode.

    Reported as ``distill/feature_error``, deliberately without "loss" in its name: mmengine's LogProcessor
    averages every scalar whose name contains "loss" over its window, which would mix the results of
    several validation epochs into the logged value.
    """

    default_prefix = 'distill'

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            value = sample.get('distill_loss') if isinstance(sample, dict) else sample.metainfo.get('distill_loss')
            if value is None:
                raise KeyError('data sample has no "distill_loss": evaluate a FeatureDistiller in predict mode')
            self.results.append(float(torch.as_tensor(value)))

    def compute_metrics(self, results: List[float]) -> dict:
        return dict(feature_error=sum(results) / max(len(results), 1))
