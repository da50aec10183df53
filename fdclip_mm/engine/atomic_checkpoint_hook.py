"""Checkpoint writes that a crash or ``kill -9`` cannot leave half-done.

mmengine 0.10.7 writes a checkpoint by ``open(final_path, 'wb').write(...)`` (``LocalBackend.put``), rewrites
``work_dir/last_checkpoint`` in place, and deletes the oldest kept checkpoint *before* writing the new one. A
kill during those writes leaves a truncated ``.pth`` under its final name, an empty pointer, or (with
``max_keep_ckpts=1``) no checkpoint at all. :class:`AtomicCheckpointHook` writes every file to a temporary
name in the same folder, flushes it to disk and renames it over the final name (``os.replace`` is atomic on
POSIX), updates the pointer the same way, and deletes old checkpoints only afterwards.
"""
import glob
import os
import os.path as osp
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import mmengine
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from fdclip_mm.registry import HOOKS

ATOMIC_BACKEND = 'fdclip_mm_atomic_local'
TMP_SUFFIX = '.fdclip-tmp'


@contextmanager
def atomic_open(path: Union[str, Path]) -> Iterator[BinaryIO]:
    """A binary file to write that appears under ``path`` only once it is complete (flushed and renamed).

    Args:
        path: Final file path; its folder is created if needed.

    Yields:
        The temporary file's handle; on an exception the temporary file is removed and ``path`` untouched.

    Raises:
        OSError: A failed write (a full disk, a file size limit) as the same error type and number, its
            message naming ``path`` and the free space left on its file system (Python's names neither).
    """
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    mmengine.mkdir_or_exist(folder)
    # not mkstemp: its files are private (0600); this one gets the umask's permissions, like a plain write
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}')
    try:
        with open(tmp, 'xb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno is not None:
            raise type(error)(error.errno, f'{error.strerror} while writing {path} ({free_space(folder)} free '
                              'on its file system)') from error
        raise


def free_space(folder: str) -> str:
    """The free space of ``folder``'s file system, e.g. ``'1.5 GiB'``, for messages."""
    free = shutil.disk_usage(folder).free
    for unit, size in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
        if free >= size:
            return f'{free / size:.1f} {unit}'
    return f'{free} bytes'


def atomic_write(data: Union[bytes, str], path: Union[str, Path]) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` / ``put_text`` are write-then-rename."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), filepath)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's :class:`~mmengine.hooks.CheckpointHook` with atomic writes (same arguments).

    For a local ``out_dir`` (the default) checkpoints go through :class:`AtomicLocalBackend`; other backends
    (``backend_args`` given, or a URI such as ``s3://``) are used as configured, only the pointer file and
    the delete-after-save order change. Temporary files left by a killed run are removed before training.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        local = self.out_dir is None or '://' not in str(self.out_dir)
        if local and self.backend_args is None and self.file_client_args is None:
            self.backend_args = dict(backend=ATOMIC_BACKEND)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for stale in glob.glob(osp.join(str(self.out_dir), f'.*{TMP_SUFFIX}')):
                os.remove(stale)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """Save (atomically), point ``last_checkpoint`` at it (atomically), then drop the oldest kept one."""
        dropped = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            # before saving, as mmengine does: the list is part of the checkpoint
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(str(self.last_ckpt), osp.join(runner.work_dir, 'last_checkpoint'))
        for old_step in dropped:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):  # DeepSpeed checkpoints are folders
                self.file_backend.rmtree(old)
