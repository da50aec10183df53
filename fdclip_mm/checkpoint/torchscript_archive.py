"""Reading the tensors of a TorchScript archive (``torch.jit.save``) without running any of its pickled code.

The archive is a zip whose ``<root>/data.pkl`` pickles the scripted or traced module as ``__torch__.*`` objects,
each built from a dict of its attributes, with every tensor's bytes stored as ``<root>/data/<key>``. It is read
with :mod:`zipfile` and a restricted unpickler (no ``torch.jit.load``): ``__torch__`` classes become inert
attribute holders, tensors are rebuilt from the raw bytes, and any other global is refused.
"""
import io
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

_STORAGE_DTYPES = {
    'HalfStorage': torch.float16,
    'BFloat16Storage': torch.bfloat16,
    'FloatStorage': torch.float32,
    'DoubleStorage': torch.float64,
    'LongStorage': torch.int64,
    'IntStorage': torch.int32,
    'ShortStorage': torch.int16,
    'CharStorage': torch.int8,
    'ByteStorage': torch.uint8,
    'BoolStorage': torch.bool,
    'UntypedStorage': torch.uint8,
}
_DTYPE_NAMES = ('float16', 'half', 'bfloat16', 'float32', 'float', 'float64', 'double', 'int64', 'long', 'int32', 'int',
                'int16', 'short', 'int8', 'uint8', 'bool')


def read_torchscript_tensors(path: str) -> Dict[str, torch.Tensor]:
    """All tensors of a TorchScript archive's module tree, keyed by dotted attribute path.

    Args:
        path: A zip written by ``torch.jit.save``.

    Returns:
        ``{'visual.conv1.weight': tensor, ...}`` for every tensor attribute (parameters and buffers).

    Raises:
        pickle.UnpicklingError: The archive pickles a global other than modules, tensors and their types.
        ValueError: The zip is no TorchScript archive, or stores big-endian tensors.
    """
    with zipfile.ZipFile(path) as archive:
        root = _archive_root(archive, path)
        _check_byteorder(archive, root, path)
        unpickler = _SafeTorchScriptUnpickler(archive, root, path)
        obj = unpickler.load()
    return dict(_named_tensors(obj, prefix=''))


def _archive_root(archive: zipfile.ZipFile, path: str) -> str:
    pickles = [name for name in archive.namelist() if re.fullmatch(r'[^/]+/data\.pkl', name)]
    roots = [name.split('/')[0] for name in pickles]
    if len(roots) != 1:
        raise ValueError(f'{path} is not a TorchScript archive: expected one <root>/data.pkl, found {roots}')
    return roots[0]


def _check_byteorder(archive: zipfile.ZipFile, root: str, path: str) -> None:
    """Archives without a byteorder record predate it and are little-endian."""
    name = f'{root}/byteorder'
    if name in archive.namelist():
        order = archive.read(name).decode().strip()
        if order != 'little':
            raise ValueError(f'{path}: tensors stored with byte order {order!r} are not supported')


class _ScriptObject:
    """Inert stand-in for a pickled ``__torch__.*`` object: keeps the attribute dict it is built from."""

    qualname = '__torch__'

    def __new__(cls, *args: Any, **kwargs: Any) -> '_ScriptObject':
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Ignores constructor arguments (``REDUCE``); the attributes arrive through ``BUILD``."""

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f'<{self.qualname}>'


def _script_class(module: str, name: str) -> type:
    return type(name, (_ScriptObject, ), {'qualname': f'{module}.{name}'})


def _rebuild_tensor(storage: torch.Tensor,
                    storage_offset: int,
                    size: Tuple[int, ...],
                    stride: Tuple[int, ...],
                    requires_grad: bool = False,
                    backward_hooks: Any = None,
                    metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` on a flat tensor standing in for the storage."""
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset).clone()


def _rebuild_tensor_v3(storage: torch.Tensor,
                       storage_offset: int,
                       size: Tuple[int, ...],
                       stride: Tuple[int, ...],
                       requires_grad: bool,
                       backward_hooks: Any,
                       dtype: torch.dtype,
                       metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v3``: an untyped (byte) storage viewed as ``dtype``."""
    return _rebuild_tensor(storage.view(dtype), storage_offset, size, stride)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any) -> torch.Tensor:
    return data


def _identity(value: Any, *args: Any) -> Any:
    return value


class _StorageType:
    """Stands for ``torch.<X>Storage`` in a persistent id: only its element type matters."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f'torch.{self.name}'


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """The globals an archive of modules and tensors needs, fresh for each load (so no pickle alters another's)."""
    allowed: Dict[Tuple[str, str], Any] = {
        ('torch._utils', '_rebuild_tensor_v2'):
        _rebuild_tensor,
        ('torch._utils', '_rebuild_tensor_v3'):
        _rebuild_tensor_v3,
        ('torch._utils', '_rebuild_parameter'):
        _rebuild_parameter,
        ('collections', 'OrderedDict'):
        OrderedDict,
        # Typed lists of scripted modules' attributes, and the aggregate type tags of the C++ pickler.
        ('torch.jit._pickle', 'build_intlist'):
        list,
        ('torch.jit._pickle', 'build_doublelist'):
        list,
        ('torch.jit._pickle', 'build_boollist'):
        list,
        ('torch.jit._pickle', 'build_tensorlist'):
        list,
        ('torch.jit._pickle', 'restore_type_tag'):
        _identity,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[('torch', name)] = _StorageType(name, dtype)
    for name in _DTYPE_NAMES:
        allowed[('torch', name)] = getattr(torch, name)
    return allowed


class _SafeTorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into inert objects and tensors, refusing any other global.

    Args:
        archive: The open zip.
        root: The archive's root folder (``<root>/data.pkl``).
        path: The file's path, for messages.
    """

    def __init__(self, archive: zipfile.ZipFile, root: str, path: str) -> None:
        super().__init__(io.BytesIO(archive.read(f'{root}/data.pkl')))
        self.archive = archive
        self.root = root
        self.path = path
        self.storages: Dict[str, torch.Tensor] = {}
        self.allowed = _allowed_globals()
        self.script_classes: Dict[Tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == '__torch__' or module.startswith('__torch__.'):
            key = (module, name)
            if key not in self.script_classes:
                self.script_classes[key] = _script_class(module, name)
            return self.script_classes[key]
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise pickle.UnpicklingError(
            f'{self.path}: refusing to unpickle global {module}.{name} (only TorchScript modules and tensors '
            'are read from TorchScript archives)')

    def persistent_load(self, pid: Any) -> torch.Tensor:
        """``('storage', storage_type, key, location, numel)`` -> flat tensor over ``<root>/data/<key>``."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage' and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f'{self.path}: unsupported persistent id {pid!r}')
        storage_type, key = pid[1], pid[2]
        if key not in self.storages:
            self.storages[key] = self._read_storage(key, storage_type.dtype)
        return self.storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype) -> torch.Tensor:
        member = f'{self.root}/data/{key}'
        try:
            raw = self.archive.read(member)
        except KeyError:
            raise pickle.UnpicklingError(f'{self.path}: tensor data {member} is missing') from None
        if not raw:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(bytearray(raw), dtype=dtype)


def _named_tensors(obj: Any, prefix: str, seen: Optional[set] = None) -> Iterator[Tuple[str, torch.Tensor]]:
    """Walks script objects and dicts, yielding each tensor under its dotted attribute path."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
        return
    if id(obj) in seen:
        return
    if isinstance(obj, _ScriptObject):
        seen.add(id(obj))
        items = obj.state.items()
    elif isinstance(obj, dict):
        seen.add(id(obj))
        items = obj.items()
    else:
        return
    for name, value in items:
        if isinstance(name, str):
            yield from _named_tensors(value, f'{prefix}.{name}' if prefix else name, seen)
