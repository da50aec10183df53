"""What identifies a file's content: its size and modification time (a cheap ``stat``) and its SHA-256.

Used where something computed from files must prove it still matches them (the teacher-target cache and the
images and teacher checkpoint it was computed from). A file whose size changed has changed; one whose size is
the same but whose modification time differs (rewritten, copied without ``-p``, touched) is hashed and compared
with the recorded hash, so that only a change of content counts.
"""
import hashlib
import os
from typing import Dict, List, Sequence, Tuple

import torch

#: Bytes read at a time when hashing.
CHUNK = 1 << 22


def file_sha256(path: str) -> bytes:
    """The SHA-256 digest (32 bytes) of the file's content."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            digest.update(chunk)
    return digest.digest()


def file_records(paths: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Size, modification time and SHA-256 of each file, as tensors (they load with ``weights_only=True``).

    Returns:
        ``size`` (N,) and ``mtime_ns`` (N,) int64, ``sha256`` (N, 32) uint8.

    Raises:
        FileNotFoundError: A path is not a file.
    """
    stats = [os.stat(path) for path in paths]
    digests = b''.join(file_sha256(path) for path in paths)
    return dict(
        size=torch.tensor([s.st_size for s in stats], dtype=torch.int64),
        mtime_ns=torch.tensor([s.st_mtime_ns for s in stats], dtype=torch.int64),
        sha256=torch.frombuffer(bytearray(digests), dtype=torch.uint8).reshape(len(paths), 32))


def changed_files(paths: Sequence[str], records: Dict[str, torch.Tensor]) -> Tuple[List[Tuple[str, str]], int]:
    """The files whose content differs from ``records`` (of :func:`file_records`, same order as ``paths``).

    Only files whose size or modification time differ from the record are read (and hashed).

    Returns:
        ``([(path, what changed), ...], number of files hashed)``.
    """
    changed, hashed = [], 0
    sizes, mtimes, digests = records['size'].tolist(), records['mtime_ns'].tolist(), records['sha256']
    for index, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except OSError as error:
            changed.append((path, f'cannot be read: {error.strerror}'))
            continue
        if stat.st_size != sizes[index]:
            changed.append((path, f'{stat.st_size} bytes, {sizes[index]} when the cache was written'))
        elif stat.st_mtime_ns != mtimes[index]:
            hashed += 1
            if file_sha256(path) != bytes(digests[index].tolist()):
                changed.append((path, 'modified since the cache was written (same size, other content)'))
    return changed, hashed
