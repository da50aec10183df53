"""DINOv2 backbone weights in Hugging Face ``Dinov2Model`` names: reading, key normalisation, checks.

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
maps them (and a ``backbone.`` / ``dinov2.`` prefix) to the layout above. ONNX exports are converted once by
:mod:`fdclip_mm.converters.dinov2_onnx` (``tools/model_converters/dinov2_onnx_to_pth.py``, the demo's fetch
script); the teacher reader reads ``.pth`` files only.
"""
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Sequence, Tuple

import torch

from fdclip_mm.checkpoint import read_checkpoint

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
POS_KEY = 'embeddings.position_embeddings'
DINOV2_HEAD_DIMS = 64
_LAYER_RE = re.compile(r'^encoder\.layer\.(\d+)\.')


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

    @property
    def num_heads(self) -> int:
        """Attention heads, which the weights do not record: DINOv2 uses 64-channel heads in every size
        (ViT-S/14 6, B/14 12, L/14 16, g/14 24, as mmpretrain's ``dinov2-*`` archs)."""
        return max(1, self.embed_dims // DINOV2_HEAD_DIMS)


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
    needed = ('embeddings.cls_token', 'embeddings.patch_embeddings.projection.weight', POS_KEY,
              'encoder.layer.0.mlp.fc1.weight')
    missing = [key for key in needed if key not in state_dict]
    if missing:
        raise ValueError(f'{source} is not a DINOv2 backbone: missing keys {_head(missing)}')
    proj = state_dict['embeddings.patch_embeddings.projection.weight']
    if proj.ndim != 4 or proj.shape[-1] != proj.shape[-2]:
        raise ValueError(f'{source}: patch projection weight has shape {tuple(proj.shape)}, '
                         'expected (C, in_channels, p, p)')
    num_positions = state_dict[POS_KEY].shape[1] - 1
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
        POS_KEY: (1, 1 + arch.pos_grid**2, c),
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
    wrong = [
        f'{key}: {tuple(state_dict[key].shape)} != {shape}' for key, shape in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    ]
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


def load_dinov2_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Canonical DINOv2 state dict from a ``.pth`` state dict (weights only; Hugging Face names).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file holds no state dict, is an ONNX export (converted once by
            ``tools/model_converters/dinov2_onnx_to_pth.py``), or (``CheckpointFileError``) cannot be read.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'DINOv2 teacher checkpoint not found: {path}')
    if path.lower().endswith('.onnx'):
        raise ValueError(f'{path} is an ONNX export: convert it once with python tools/model_converters/'
                         'dinov2_onnx_to_pth.py SRC.onnx DST.pth and use the .pth file')
    loaded = read_checkpoint(path)
    if isinstance(loaded, dict) and isinstance(loaded.get('state_dict'), dict):
        loaded = loaded['state_dict']
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f'{path} does not hold a state dict of tensors (got {type(loaded).__name__})')
    weights = normalize_dinov2_keys(loaded)
    check_dinov2_state_dict(weights, source=path)
    return weights
