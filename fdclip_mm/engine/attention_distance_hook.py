"""Logs the mean attention distance of every layer (and optionally head) to the visualiser every N epochs."""
from typing import Dict, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from fdclip_mm.analysis.attention_distance import layer_attention_distances
from fdclip_mm.analysis.attention_model import collect_attention, patch_size_of, resolve_attention_module, unwrap
from fdclip_mm.registry import HOOKS


@HOOKS.register_module()
class AttentionDistanceHook(Hook):
    """Every ``interval`` epochs (and after the last), measures the attention distance on fixed images.

    The images are the first ``num_images`` of the validation dataloader (the training one when the run has
    none), passed once through the model's data preprocessor and kept, so every measurement sees the same
    inputs. For a :class:`FeatureDistiller` the student (``part='student'``, its inputs) or the teacher is
    analysed; for a classifier / detector / segmentor, its backbone. Logged scalars (step = epoch):
    ``attention_distance/layer_{i}`` (mean over heads, pixels), ``attention_distance/layer_{i}_spread``
    (max - min over heads) and, with ``per_head``, ``attention_distance/layer_{i}_head_{j}``.

    Args:
        interval: Epochs between measurements.
        num_images: Images measured on.
        part: Which module to analyse (see :func:`resolve_attention_module`).
        per_head: Also log every head.
        renormalize: See :func:`attention_distance`.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 1,
                 num_images: int = 8,
                 part: str = 'auto',
                 per_head: bool = False,
                 renormalize: bool = True) -> None:
        if interval < 1 or num_images < 1:
            raise ValueError(f'interval and num_images must be >= 1, got {interval} and {num_images}')
        self.interval = interval
        self.num_images = num_images
        self.part = part
        self.per_head = per_head
        self.renormalize = renormalize
        self._inputs: Optional[torch.Tensor] = None

    @staticmethod
    def _probe_dataloader(runner):
        """The validation dataloader, or the training one for a run without validation."""
        loop = runner.val_loop
        return loop.dataloader if loop is not None else runner.train_dataloader

    def _probe_inputs(self, runner) -> torch.Tensor:
        """The first ``num_images`` preprocessed images, as the analysed module takes them."""
        if self._inputs is None:
            model = unwrap(runner.model)
            batches = []
            for data in self._probe_dataloader(runner):
                inputs = model.data_preprocessor(data, False)['inputs']
                if isinstance(inputs, dict):
                    inputs = inputs['teachers'][0] if self.part == 'teacher' else inputs['student']
                batches.append(inputs)
                if sum(len(b) for b in batches) >= self.num_images:
                    break
            self._inputs = torch.cat(batches)[:self.num_images]
        return self._inputs

    def measure(self, runner) -> torch.Tensor:
        """(layers, heads) mean attention distance in pixels of the analysed module on the probe images."""
        module = resolve_attention_module(runner.model, self.part)
        inputs = self._probe_inputs(runner)
        patch = patch_size_of(module)
        attn = collect_attention(module, inputs)
        grid = (inputs.shape[-2] // patch, inputs.shape[-1] // patch)
        return layer_attention_distances(attn, grid, patch, renormalize=self.renormalize)

    def scalars(self, distances: torch.Tensor) -> Dict[str, float]:
        """Visualiser scalars of a (layers, heads) distance table."""
        out = {}
        for layer, heads in enumerate(distances.tolist()):
            out[f'attention_distance/layer_{layer}'] = sum(heads) / len(heads)
            out[f'attention_distance/layer_{layer}_spread'] = max(heads) - min(heads)
            if self.per_head:
                out.update({f'attention_distance/layer_{layer}_head_{h}': v for h, v in enumerate(heads)})
        return out

    def after_train_epoch(self, runner) -> None:
        if not (self.every_n_epochs(runner, self.interval) or self.is_last_train_epoch(runner)):
            return
        if not is_main_process():
            return
        distances = self.measure(runner)
        runner.visualizer.add_scalars(self.scalars(distances), step=runner.epoch + 1)
        runner.logger.info('attention distance (px, mean over heads) per layer: ' +
                           ' '.join(f'{d:.1f}' for d in distances.mean(dim=1).tolist()))
