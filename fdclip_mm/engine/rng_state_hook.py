"""Random-number-generator states saved in checkpoints and restored on resume.

mmengine re-seeds the generators when a run resumes but does not restore their states, so drop path,
token masking and main-process data augmentation draw different numbers after a resume than the run would
have drawn uninterrupted. This hook stores every rank's Python, NumPy and torch (CPU and CUDA) generator
states in the checkpoint and puts them back before training continues. Together with a fixed seed,
deterministic kernels, and data-loader workers that are re-seeded each epoch (``num_workers=0`` or
``persistent_workers=False``; mmengine seeds workers from the seed, the rank and the worker id, so every
epoch starts the workers alike), a resumed run ends with the same weights as an uninterrupted one.
Persistent workers keep their generators across epochs in processes a crash takes with it: resuming then
still works, but augmentation draws differ from the uninterrupted run.

The states are plain tensors and tuples of ints, so ``weights_only`` loading reads them.
"""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from fdclip_mm.registry import HOOKS

CHECKPOINT_KEY = 'rng_states'


def get_rng_state() -> dict:
    """This process's generator states, in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=dict(
            name=name,
            keys=torch.from_numpy(keys.astype(np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached_gaussian)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores the states written by :func:`get_rng_state`.

    The tensors may come on any device: a resume on a GPU reads the checkpoint with ``map_location`` on the
    GPU (mmengine's ``'default'``), while the generators take CPU byte tensors and NumPy its host array.
    """
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state['numpy']
    np.random.set_state((numpy_state['name'], numpy_state['keys'].cpu().numpy().astype(np.uint32), numpy_state['pos'],
                         numpy_state['has_gauss'], numpy_state['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([device_state.cpu() for device_state in state['cuda']])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves every rank's generator states with each checkpoint and replays them when training continues.

    Every rank captures its states where the checkpoint hook is about to save (end of an epoch, or of every
    ``interval``-th iteration for iteration-based checkpoints); the lists are gathered because only rank 0
    writes the checkpoint. Those states are put back before training continues from that iteration, whether
    the run goes on uninterrupted or resumes from the checkpoint, so what runs in between in the
    uninterrupted run (validation creating its data-loader iterator, say) does not shift the generators.
    They are applied in ``before_train_epoch`` (before the epoch's data loading) or, for iteration-based
    loops, ``before_train_iter``. ``load_from`` without ``resume`` starts at iteration 0 and leaves them
    alone. A resume with another number of processes keeps mmengine's seeding and logs a warning.
    """
    priority = 'LOW'  # before the checkpoint hook (VERY_LOW) in after_train_epoch / after_train_iter

    def __init__(self) -> None:
        self._iter_interval = 0
        self._saved_iter = -1
        self._saved_states: Optional[List[dict]] = None
        self._pending: Optional[dict] = None
        self._pending_iter = -1
        self._pending_from_checkpoint = False

    def before_train(self, runner) -> None:
        checkpoint_hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if checkpoint_hook is not None and not checkpoint_hook.by_epoch:
            self._iter_interval = checkpoint_hook.interval

    def after_train_epoch(self, runner) -> None:
        self._capture(runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._iter_interval > 0 and (self.every_n_train_iters(runner, self._iter_interval)
                                        or self.is_last_train_iter(runner)):
            self._capture(runner.iter + 1)

    def _capture(self, step: int) -> None:
        self._saved_iter, self._saved_states = step, all_gather_object(get_rng_state())
        self._pending, self._pending_iter = self._saved_states[get_rank()], step
        self._pending_from_checkpoint = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if checkpoint['meta']['iter'] == self._saved_iter:
            checkpoint[CHECKPOINT_KEY] = self._saved_states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get(CHECKPOINT_KEY)
        if states is None:
            return
        if len(states) != get_world_size():
            print_log(
                f'The checkpoint holds generator states of {len(states)} processes, this run has '
                f'{get_world_size()}: keeping the re-seeded generators',
                logger='current',
                level=30)
            return
        self._pending, self._pending_iter = states[get_rank()], checkpoint['meta']['iter']
        self._pending_from_checkpoint = True

    def before_train_epoch(self, runner) -> None:
        self._replay(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._replay(runner)

    def _replay(self, runner) -> None:
        if self._pending is None or runner.iter != self._pending_iter or runner.iter == 0:
            return
        set_rng_state(self._pending)
        self._pending = None
        if self._pending_from_checkpoint:  # in an uninterrupted run the replay is routine: not worth a line
            print_log(
                f'Restored the random generator states of iteration {runner.iter} from the checkpoint',
                logger='current')
