"""Allow ``torch.load(weights_only=True)`` to read mmengine Runner checkpoints.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and mmengine 0.10.7's
``CheckpointLoader`` (``load_from_local`` and friends) calls ``torch.load(filename, map_location=...)``
without ``weights_only``, so the default applies when a run is resumed or a Runner checkpoint is loaded.
A Runner checkpoint holds, besides tensors, the ``message_hub`` state: mmengine ``HistoryBuffer`` objects
(numpy arrays of logged values and counts, plus the buffer's statistics methods) and runtime information
that may contain numpy scalars (e.g. ``best_score`` from ``CheckpointHook(save_best=...)``).

This module allowlists exactly those globals with :func:`torch.serialization.add_safe_globals`. It never
sets ``weights_only=False`` and does not patch ``torch.load``: everything outside the list is still
refused by torch's restricted unpickler.

The globals a real checkpoint needs were found by saving a checkpoint with an mmengine 0.10.7 Runner
(numpy 1.26, torch 2.14; iteration based, with validation and ``save_best``) and loading it with
``weights_only=True``, adding what torch's error named, until it loaded:

- ``mmengine.logging.history_buffer.HistoryBuffer`` (the object itself);
- ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` (any numpy array);
- ``numpy.dtypes.Float64DType`` (logged values), ``numpy.dtypes.Int64DType`` (logged counts);
- ``numpy.core.multiarray.scalar`` (numpy scalars: ``runtime_info['eta']`` is always a numpy float64,
  ``best_score`` often is);
- ``builtins.getattr``: pickle protocol 2 (``torch.save``'s default) stores the method references in
  ``HistoryBuffer``'s state (``HistoryBuffer.min`` / ``max`` / ``current`` / ``mean``) as
  ``getattr(HistoryBuffer, name)``. Allowlisting the real ``getattr`` would let a file fetch any attribute
  of any allowed object, so the name ``builtins.getattr`` is bound to :func:`_history_buffer_getattr`,
  which only returns those four methods and refuses everything else.

Checkpoints written under numpy 1.x name the numpy functions ``numpy.core.multiarray.*`` and those
written under numpy 2.x ``numpy._core.multiarray.*``; both spellings map to the same two functions.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.utils import digit_version

SafeGlobal = Union[Callable, Tuple[Callable, str]]

#: Statistics methods of ``HistoryBuffer`` that its pickled state refers to by ``getattr``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')

#: numpy dtypes whose dtype class appears in Runner checkpoints: logged values and counts.
NUMPY_DTYPES = (np.float64, np.int64)


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling with ``weights_only=True``.

    Args:
        obj: The object whose attribute the pickle asks for.
        name: The attribute name.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)`` for the statistics methods of ``HistoryBuffer``.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'weights_only load: getattr({obj!r}, {name!r}) is not allowed; fdclip_mm only allows '
                                 f'getattr(HistoryBuffer, name) for name in {HISTORY_BUFFER_METHODS}.')


def _numpy_functions() -> Tuple[Callable, Callable]:
    """Return numpy's array and scalar reconstruction functions without importing private paths.

    Returns:
        tuple: ``(_reconstruct, scalar)`` as numpy's own ``__reduce__`` reports them.
    """
    reconstruct = np.zeros(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    return reconstruct, scalar


def checkpoint_safe_globals() -> List[SafeGlobal]:
    """List the globals an mmengine Runner checkpoint needs under ``weights_only=True``.

    Returns:
        list: Entries for :func:`torch.serialization.add_safe_globals`: objects, or ``(object, full
        name)`` pairs where the name in the file differs from the object's own.
    """
    reconstruct, scalar = _numpy_functions()
    safe: List[SafeGlobal] = [HistoryBuffer, np.ndarray, np.dtype]
    for func in (reconstruct, scalar):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            safe.append((func, f'{module}.{func.__name__}'))
    # numpy >= 1.25 gives every dtype its own class (numpy.dtypes.Float64DType, ...); the pickle
    # rebuilds a dtype with ``numpy.dtype(...)`` and then sets its state, which torch only allows for
    # allowlisted types. Older numpy has no such classes: ``type(dtype)`` is ``numpy.dtype`` itself.
    for dtype in NUMPY_DTYPES:
        dtype_cls = type(np.dtype(dtype))
        if dtype_cls is not np.dtype:
            safe.append(dtype_cls)
    safe.append((_history_buffer_getattr, 'builtins.getattr'))
    return safe


def register_checkpoint_globals() -> List[SafeGlobal]:
    """Allowlist :func:`checkpoint_safe_globals` for ``torch.load(weights_only=True)``.

    Idempotent (torch keeps the allowlist as a set). Called when :mod:`fdclip_mm` is imported, so a
    config with ``custom_imports=dict(imports=['fdclip_mm'])`` can resume its own runs. Does nothing before
    torch 2.6, whose ``torch.load`` defaults to ``weights_only=False`` and whose ``add_safe_globals`` may
    not accept ``(object, name)`` pairs.

    Returns:
        list: The registered entries (empty before torch 2.6).
    """
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        return []
    safe = checkpoint_safe_globals()
    torch.serialization.add_safe_globals(safe)
    return safe
