"""Says how the training data loader is set up and, once measured, whether the steps wait for it."""
import math
from typing import Optional

from mmengine.dist import get_world_size
from mmengine.hooks import Hook

from fdclip_mm.registry import HOOKS


def loader_settings(loader, world_size: int) -> str:
    """One line describing a ``torch.utils.data.DataLoader``'s throughput settings."""
    workers = loader.num_workers
    parts = [
        f'{workers} worker process(es) per rank x {world_size} rank(s)'
        if workers else f'no worker process (loading in the training process) x {world_size} rank(s)',
        f'batch {loader.batch_size}',
    ]
    if workers:
        parts += [
            f'{loader.prefetch_factor} batches prefetched per worker',
            'persistent workers' if loader.persistent_workers else 'workers restarted every epoch'
        ]
    parts.append('pinned host memory' if loader.pin_memory else 'pageable host memory')
    return ', '.join(parts)


def throughput_verdict(data_time: float, iter_time: float, batch: int, workers: int, max_wait: float) -> Optional[str]:
    """What the mean time per iteration says about the loader, or None if the steps hardly wait for data.

    Args:
        data_time: Mean seconds an iteration waited for its batch (mmengine's ``data_time``).
        iter_time: Mean seconds per iteration, the wait included (mmengine's ``time``).
        batch: Images per batch and rank.
        workers: Loader worker processes per rank.
        max_wait: Fraction of the time the steps may wait before the run counts as loader-bound.

    Returns:
        str | None: The rates measured (per rank, and per worker while all of them are busy, which they are
        when the steps wait) and the workers the step's own rate needs (workers per GPU = images/s the step
        takes / images/s per worker).
    """
    if iter_time <= 0 or data_time / iter_time <= max_wait:
        return None
    delivered = batch / iter_time
    step_rate = batch / max(iter_time - data_time, 1e-9)
    if not workers:
        return (f'the training steps wait for data {data_time / iter_time:.0%} of the time: the training '
                f'process loads {delivered:.0f} images/s itself, the step alone would take {step_rate:.0f}; '
                'set train_dataloader.num_workers')
    per_worker = delivered / workers
    return (f'the training steps wait for data {data_time / iter_time:.0%} of the time: {workers} worker(s) '
            f'deliver {delivered:.0f} images/s per rank, {per_worker:.0f} per worker; the step alone would take '
            f'{step_rate:.0f} images/s, which needs {math.ceil(step_rate / per_worker)} workers per rank')


@HOOKS.register_module()
class LoaderReportHook(Hook):
    """Logs the training loader's settings once at the start, and once whether the run is loader-bound.

    The second message comes after ``skip + window`` iterations of the process, from the mean ``data_time``
    and ``time`` that mmengine's ``IterTimerHook`` records over the last ``window`` iterations (the first
    ``skip`` include the workers' start): if the steps waited for data more than ``max_wait`` of the time, a
    warning with the images/s each worker delivered and the number of workers the step's own rate needs
    (:func:`throughput_verdict`); otherwise one line saying so.

    Args:
        skip: Iterations left out at the start.
        window: Iterations averaged.
        max_wait: Fraction of the time spent waiting for data above which the run is loader-bound.
    """

    priority = 'LOW'  # after IterTimerHook has recorded the iteration

    def __init__(self, skip: int = 10, window: int = 40, max_wait: float = 0.05) -> None:
        self.skip, self.window, self.max_wait = skip, window, max_wait
        self._iterations = 0  # of this process (a resumed run counts from its first iteration again)

    def before_train(self, runner) -> None:
        runner.logger.info(f'training loader: {loader_settings(runner.train_dataloader, get_world_size())}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._iterations += 1
        if self._iterations != self.skip + self.window:
            return
        hub = runner.message_hub
        if 'train/time' not in hub.log_scalars or 'train/data_time' not in hub.log_scalars:
            return
        data_time = hub.get_scalar('train/data_time').mean(self.window)
        iter_time = hub.get_scalar('train/time').mean(self.window)
        loader = runner.train_dataloader
        verdict = throughput_verdict(data_time, iter_time, loader.batch_size, loader.num_workers, self.max_wait)
        if verdict is None:
            runner.logger.info(f'training loader keeps up: the steps waited for data {data_time / iter_time:.0%} '
                               f'of the time over iterations {self.skip + 1}-{self.skip + self.window}')
        else:
            runner.logger.warning(f'loader-bound run: {verdict} (iterations {self.skip + 1}-'
                                  f'{self.skip + self.window})')
