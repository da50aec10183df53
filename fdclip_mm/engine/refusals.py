"""Runs that cannot train, refused by name before their first step.

mmengine starts such runs and fails later with a message that does not say what to change, or does not fail:

- an epoch of zero iterations (fewer training items per process than ``batch_size`` with ``drop_last=True``):
  ``AssertionError: epoch_length must be a positive integer, but got 0``, or, with epoch-based schedulers,
  exit 0 after no step and an untrained checkpoint;
- ``--resume`` of a run whose checkpoint is past ``max_epochs`` / ``max_iters``: a silent no-op, exit 0 (a
  run resumed exactly at its end is told so in one line);
- FlexAttention in a module that trains on the CPU: torch has no CPU backward for it, so the first step fails
  with torch's message.

:class:`~fdclip_mm.engine.CheckedRunner` and :class:`~fdclip_mm.engine.CheckedFlexibleRunner` call these
checks; ``tools/train.py`` prints a :class:`RunRefused` as one line.
"""
from typing import Optional

from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch import nn

from fdclip_mm.models.backbones.attention import Attention


class RunRefused(RuntimeError):
    """A run refused before it starts; the message names what is wrong and what to change."""


def refuse_empty_epochs(dataloader, world_size: int = 1) -> None:
    """Refuses a training data loader that gives no batch per epoch.

    Args:
        dataloader: The run's training ``DataLoader`` (one without a length passes).
        world_size: Processes sharing the data (each gets its sampler's share).

    Raises:
        RunRefused: Naming the dataset's size, the items per process, ``batch_size`` and ``drop_last``.
    """
    try:
        batches = len(dataloader)
    except TypeError:  # an iterable dataset: its length is unknown until it is read
        return
    if batches > 0:
        return
    dataset, sampler = dataloader.dataset, getattr(dataloader, 'sampler', None)
    per_process = len(sampler) if sampler is not None and hasattr(sampler, '__len__') else len(dataset)
    batch_size = dataloader.batch_size if dataloader.batch_size is not None else \
        getattr(dataloader.batch_sampler, 'batch_size', None)
    drop_last = dataloader.drop_last if dataloader.batch_size is not None else \
        getattr(dataloader.batch_sampler, 'drop_last', None)
    shared = f' over {world_size} processes' if world_size > 1 else ''
    raise RunRefused(f'train_dataloader gives 0 iterations per epoch: its dataset ({type(dataset).__name__}) '
                     f'has {len(dataset)} items, {per_process} per process{shared}, fewer than '
                     f'train_dataloader.batch_size={batch_size} with drop_last={drop_last}. Lower batch_size, '
                     'set train_dataloader.drop_last=False, or train on more data')


def check_resumed_run(train_loop, checkpoint: str) -> Optional[str]:
    """Refuses to resume a run whose checkpoint is past the loop's end; describes one exactly at its end.

    A checkpoint past ``max_epochs`` / ``max_iters`` means the config lowered them: mmengine then ends at once
    with exit code 0 and the user's intent is unknown, so it is refused. A run resumed exactly at its end is
    not refused: ``--resume`` is also how automation reruns a stage that may have finished (``make demo``,
    ``tools/reproduce.py``, a requeued cluster job); it trains nothing, and the returned line says so.

    Args:
        train_loop: The run's training loop, after the checkpoint was resumed (mmengine's epoch- or
            iteration-based loop, or a subclass; other loops pass).
        checkpoint: The resumed checkpoint, for the messages.

    Returns:
        ``'CHECKPOINT: the run already finished at epoch N ...; raise max_epochs to continue it'`` for a run at
        its end, else None.

    Raises:
        RunRefused: The checkpoint is past the end, with the same advice.
    """
    if isinstance(train_loop, EpochBasedTrainLoop):
        done, end, unit, key = train_loop.epoch, train_loop.max_epochs, 'epoch', 'max_epochs'
    elif isinstance(train_loop, IterBasedTrainLoop):
        done, end, unit, key = train_loop.iter, train_loop.max_iters, 'iteration', 'max_iters'
    else:
        return None
    if done < end:
        return None
    where = f'(train_cfg.{key}={end})' if done == end else f'beyond train_cfg.{key}={end}'
    message = f'{checkpoint}: the run already finished at {unit} {done} {where}; raise {key} to continue it'
    if done > end:
        raise RunRefused(message)
    return message + ': nothing to train'


def refuse_flex_attention_on_cpu(model: nn.Module, device_type: str) -> None:
    """Refuses FlexAttention in a trained part of ``model`` when training runs on the CPU.

    Args:
        model: The (unwrapped) model.
        device_type: The training device (``'cpu'``, ``'cuda'``, ...).

    Raises:
        RunRefused: Naming the config key (``model.<part>.attn_backend``) and the first module.
    """
    if device_type != 'cpu':
        return
    for name, module in model.named_modules():
        trained = any(p.requires_grad for p in module.parameters())
        if isinstance(module, Attention) and module.backend == 'flex' and trained:
            key = f'model.{name.split(".")[0]}.attn_backend' if name else 'attn_backend'
            raise RunRefused(f"{key}='flex' ({name}): FlexAttention has no backward on the CPU in torch, so this "
                             f"CPU run cannot train; use {key}='auto' (or 'sdpa' / 'explicit') here, 'flex' on "
                             'GPUs')
