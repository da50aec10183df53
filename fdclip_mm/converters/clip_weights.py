"""Reads the visual tower of a CLIP checkpoint without executing pickled code.

Two kinds of file are accepted:

* OpenAI's published TorchScript archives (``ViT-B-16.pt`` ...): a zip whose ``<root>/data.pkl`` pickles the
  scripted/traced ``CLIP`` module as ``__torch__.*`` objects, each built from a dict of its attributes, with
  every tensor's bytes stored as ``<root>/data/<key>``. It is read with :mod:`zipfile` and a restricted
  unpickler (no ``torch.jit.load``): ``__torch__`` classes become inert attribute holders, tensors are rebuilt
  from the raw bytes, and any other global is refused.
* Plain state dicts (``torch.load(..., weights_only=True)``, or ``.safetensors``) with OpenAI/open_clip key
  names, the ``visual.`` prefix optional, possibly wrapped in ``{'state_dict': ...}`` or ``{'model': ...}``.

Both return the visual tower's tensors under OpenAI names without the ``visual.`` prefix.
"""
import io
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from fdclip_mm.checkpoint import is_torchscript_archive, read_checkpoint

# Per-block keys of an OpenAI-layout residual attention block.
BLOCK_KEYS = ('ln_1.weight', 'ln_1.bias', 'attn.in_proj_weight', 'attn.in_proj_bias', 'attn.out_proj.weight',
              'attn.out_proj.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight',
              'mlp.c_proj.bias')
STEM_KEYS = ('conv1.weight', 'class_embedding', 'positional_embedding', 'ln_pre.weight', 'ln_pre.bias',
             'ln_post.weight', 'ln_post.bias')
_BLOCK_RE = re.compile(r'^transformer\.resblocks\.(\d+)\.')
_WRAPPER_KEYS = ('state_dict', 'model')

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


def load_clip_visual_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Reads the visual tower's tensors of a CLIP checkpoint.

    Args:
        path: An OpenAI TorchScript archive, or a state-dict file (``torch.save`` or ``.safetensors``) in
            OpenAI/open_clip naming.

    Returns:
        The tower's tensors in their stored dtype, keyed ``conv1.weight``, ``class_embedding``,
        ``positional_embedding``, ``ln_pre.*``, ``transformer.resblocks.N.*``, ``ln_post.*`` and ``proj``
        when the file has it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: A TorchScript archive pickles something other than modules and tensors.
        fdclip_mm.checkpoint.CheckpointFileError: A plain checkpoint file is unreadable or holds objects
            other than weights (the message names the file).
        ValueError: The file is not a CLIP visual tower (the message names the missing keys).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'CLIP checkpoint not found: {path}')
    if is_torchscript_archive(path):
        tensors = read_torchscript_tensors(path)
    else:
        tensors = _read_state_dict_file(path)
    visual = select_visual_tower(tensors)
    check_visual_keys(visual, path)
    return visual


def read_torchscript_tensors(path: str) -> Dict[str, torch.Tensor]:
    """All tensors of a TorchScript archive's module tree, keyed by dotted attribute path.

    Args:
        path: A zip written by ``torch.jit.save``.

    Returns:
        ``{'visual.conv1.weight': tensor, ...}`` for every tensor attribute (parameters and buffers).
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
    """The globals a CLIP archive needs, fresh for each load (a pickle cannot alter another load's)."""
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
            'are read from CLIP archives)')

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


def _read_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path, device='cpu')
    return _unwrap(read_checkpoint(path), path)


def _unwrap(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint (``{'state_dict': ...}`` / ``{'model': ...}`` / bare)."""
    for _ in range(2):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, dict):
        raise ValueError(f'{path} is not a CLIP checkpoint: it holds a {type(obj).__name__}, not a dict')
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def select_visual_tower(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keeps the visual tower's tensors and drops the ``module.``/``visual.`` prefixes.

    When any key has the ``visual.`` prefix, only those keys are kept (the text tower is ignored);
    otherwise the whole dict is taken to be a visual tower.
    """
    tensors = {_strip(k, 'module.'): v for k, v in tensors.items()}
    if any(k.startswith('visual.') for k in tensors):
        return {k[len('visual.'):]: v for k, v in tensors.items() if k.startswith('visual.')}
    return dict(tensors)


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def block_indices(state_dict: Dict[str, torch.Tensor]) -> List[int]:
    """Sorted indices N of the ``transformer.resblocks.N.*`` keys."""
    found = {int(m.group(1)) for m in map(_BLOCK_RE.match, state_dict) if m}
    return sorted(found)


def check_visual_keys(state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """Raises ``ValueError`` naming ``path`` and the missing keys unless ``state_dict`` is a CLIP tower.

    Blocks must be numbered 0..L-1 with L >= 1 and each must be complete.
    """
    layers = block_indices(state_dict)
    expected = list(STEM_KEYS)
    for i in range(max(layers, default=0) + 1):
        expected += [f'transformer.resblocks.{i}.{k}' for k in BLOCK_KEYS]
    missing = [k for k in expected if k not in state_dict]
    if missing:
        shown = ', '.join(missing[:12]) + (f', ... ({len(missing)} in all)' if len(missing) > 12 else '')
        raise ValueError(f'{path} is not a CLIP visual tower (OpenAI/open_clip layout): missing keys {shown}')


__all__ = [
    'load_clip_visual_state_dict', 'read_torchscript_tensors', 'select_visual_tower', 'check_visual_keys',
    'block_indices', 'BLOCK_KEYS', 'STEM_KEYS'
]
