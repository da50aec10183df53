"""Reads the visual tower of a CLIP checkpoint without executing pickled code.

Two kinds of file are accepted:

* OpenAI's published TorchScript archives (``ViT-B-16.pt`` ...), which pickle the scripted/traced ``CLIP``
  module: read by :func:`fdclip_mm.checkpoint.read_torchscript_tensors` (no ``torch.jit.load``, no pickled
  code run).
* Plain state dicts (``torch.load(..., weights_only=True)``, or ``.safetensors``) with OpenAI/open_clip key
  names, the ``visual.`` prefix optional, possibly wrapped in ``{'state_dict': ...}`` or ``{'model': ...}``.

Both return the visual tower's tensors under OpenAI names without the ``visual.`` prefix.
"""
import os.path as osp
import re
from typing import Any, Dict, List

import torch

from fdclip_mm.checkpoint import is_torchscript_archive, read_checkpoint, read_torchscript_tensors

# Per-block keys of an OpenAI-layout residual attention block.
BLOCK_KEYS = ('ln_1.weight', 'ln_1.bias', 'attn.in_proj_weight', 'attn.in_proj_bias', 'attn.out_proj.weight',
              'attn.out_proj.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight',
              'mlp.c_proj.bias')
STEM_KEYS = ('conv1.weight', 'class_embedding', 'positional_embedding', 'ln_pre.weight', 'ln_pre.bias',
             'ln_post.weight', 'ln_post.bias')
_BLOCK_RE = re.compile(r'^transformer\.resblocks\.(\d+)\.')
_WRAPPER_KEYS = ('state_dict', 'model')


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
    'load_clip_visual_state_dict', 'select_visual_tower', 'check_visual_keys', 'block_indices', 'BLOCK_KEYS',
    'STEM_KEYS'
]
