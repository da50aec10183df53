"""Reading the Feature-Distillation authors' released checkpoints as tensors, without yacs and without running code.

The official code (SwinTransformer/Feature-Distillation, ``utils.save_checkpoint``) writes ``{'model',
'optimizer', 'lr_scheduler', 'scaler', 'max_accuracy', 'epoch', 'config'}``, where ``config`` is its yacs
``CfgNode``; a released file may also hold only the model's state dict (the official ``load_pretrained`` reads
both, and an EsViT-style ``model['student']``). ``torch.load(weights_only=True)`` refuses the ``CfgNode`` class.
We allow that one class name for the duration of one read, bound to ``collections.OrderedDict`` (a ``CfgNode`` is
a ``dict`` whose instance attributes are yacs' bookkeeping), so that torch's restricted unpickler rebuilds it as
plain data; every other global is still refused by name, and nothing of yacs (installed or not) runs.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import torch

from .files import CheckpointFileError, read_checkpoint

#: The class the official code pickles its config as, and the one global name this reader adds.
YACS_CFG_NODE = 'yacs.config.CfgNode'
#: Prefix a model wrapped in ``DistributedDataParallel`` was saved with (the official ``load_pretrained`` strips it).
DDP_PREFIX = 'module.'


@dataclass
class OfficialFDCheckpoint:
    """What a released file holds that we use.

    Attributes:
        path: The file.
        model: The model's tensors, keys as the official code names them.
        config: The official yacs config as nested plain dicts, when the file holds one.
        epoch: The epoch the file was written after, when the file says.
    """
    path: str
    model: Dict[str, torch.Tensor]
    config: Optional[Dict[str, Any]] = None
    epoch: Optional[int] = None

    def config_value(self, *keys: str) -> Any:
        """``config[keys[0]][keys[1]]...``, or None when the file holds no config or no such entry."""
        node: Any = self.config
        for key in keys:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node


def plain_config(node: Any) -> Any:
    """A read ``CfgNode`` (an ``OrderedDict``) and everything in it as plain dicts, lists and values."""
    if isinstance(node, Mapping):
        return {key: plain_config(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(plain_config(value) for value in node)
    return node


def read_official_fd_checkpoint(path: str) -> OfficialFDCheckpoint:
    """The tensors (and config, if any) of a checkpoint written by the official FD code.

    Args:
        path: A released distilled or fine-tuned file (``.pth``).

    Returns:
        OfficialFDCheckpoint: Its model tensors, config and epoch.

    Raises:
        CheckpointFileError: The file is unreadable, holds Python objects other than tensors, plain data and the
            yacs config (named in the message; nothing of it is run), or holds no state dict of tensors.
    """
    with torch.serialization.safe_globals([(OrderedDict, YACS_CFG_NODE)]):
        loaded = read_checkpoint(path)
    if not isinstance(loaded, Mapping):
        raise CheckpointFileError(f'{path} holds a {type(loaded).__name__}, not a checkpoint of the official FD code')
    # 'state_dict': a checkpoint of another kind (e.g. mmengine's) gets as far as the check of its keys, which names
    # what it holds
    model = loaded.get('model', loaded.get('state_dict', loaded))
    if isinstance(model, Mapping) and isinstance(model.get('student'), Mapping):
        model = model['student']
    tensors = _state_dict_of(model, path)
    config = loaded.get('config')
    epoch = loaded.get('epoch')
    return OfficialFDCheckpoint(
        path=path,
        model=tensors,
        config=plain_config(config) if isinstance(config, Mapping) else None,
        epoch=epoch if isinstance(epoch, int) else None)


def _state_dict_of(model: Any, path: str) -> Dict[str, torch.Tensor]:
    """The tensors of ``model`` (a state dict), without a ``module.`` prefix; anything else is refused."""
    if not isinstance(model, Mapping) or not model:
        raise CheckpointFileError(f'{path} holds no model state dict (expected a dict of tensors under "model")')
    other = [key for key, value in model.items() if not isinstance(value, torch.Tensor)]
    if other:
        raise CheckpointFileError(f'{path}: the model state dict has entries that are not tensors: {other[:5]}')
    if all(key.startswith(DDP_PREFIX) for key in model):
        return {key[len(DDP_PREFIX):]: value for key, value in model.items()}
    return dict(model)
