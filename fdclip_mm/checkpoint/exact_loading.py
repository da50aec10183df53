"""Loading state dicts exactly: every key used, none missing, every shape right.

:func:`load_state_dict_exactly` loads a state dict into a module and refuses any key or shape that does not
fit, listing them, where mmengine's loaders (``Runner.load_checkpoint``, ``PretrainedInit``) warn and go on
with whatever matched, e.g. nothing at all. :func:`revise_keys` applies mmengine's ``revise_keys`` patterns.
"""
import re
from collections import OrderedDict
from typing import List, Mapping

import torch
from torch import nn

#: How many offending keys an error message lists per kind.
SHOWN_KEYS = 5


class CheckpointMismatchError(ValueError):
    """A state dict whose keys or shapes do not fit the module it is loaded into."""


def revise_keys(state_dict: Mapping[str, torch.Tensor], patterns: List[tuple]) -> 'OrderedDict[str, torch.Tensor]':
    """``state_dict`` with mmengine's ``revise_keys`` ``(pattern, replacement)`` regexes applied to its keys, in
    order, keeping torch's ``_metadata`` (as mmengine's ``_load_checkpoint_to_model`` does)."""
    revised = OrderedDict()
    for key, value in state_dict.items():
        for pattern, replacement in patterns:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        revised._metadata = metadata
    return revised


#: What :func:`load_state_dict_exactly` suggests for a run checkpoint that does not fit.
RUN_CHECKPOINT_HINT = ('Is it the right file for this config? A backbone file from tools/model_converters goes into '
                       "the backbone's init_cfg; load_from and tools/test.py take a checkpoint of a run of this "
                       'model. To load what fits on purpose, set strict_load = False in the config')


def load_state_dict_exactly(module: nn.Module,
                            state_dict: Mapping[str, torch.Tensor],
                            source: str,
                            hint: str = RUN_CHECKPOINT_HINT) -> None:
    """Load ``state_dict`` into ``module``, refusing missing, unexpected or differently shaped tensors.

    The module's own load hooks run first (e.g. :class:`~fdclip_mm.models.backbones.FDViT` fits a position
    table to its grid; the distiller ignores its teacher; mmpretrain's ``SwinTransformerV2`` drops the position
    tables it recomputes), so only what they cannot fit is refused.

    Args:
        module: The module to load into.
        state_dict: The tensors.
        source: The file (or description) the tensors come from, for the error message.
        hint: What the error message suggests.

    Raises:
        CheckpointMismatchError: Listing the missing and unexpected keys and the shape mismatches.
    """
    try:
        result = module.load_state_dict(state_dict, strict=False)
        problems = []
    except RuntimeError as err:  # torch raises for shape mismatches even with strict=False
        lines = [line.strip() for line in str(err).splitlines() if 'size mismatch' in line]
        if not lines:
            raise
        problems = [f'{len(lines)} shape mismatches: ' + '; '.join(lines[:SHOWN_KEYS])]
        result = None
    if result is not None:
        # A key the file has but the module reports missing was dropped by the module's own load hook, to be
        # recomputed (mmpretrain's SwinTransformerV2 rebuilds its position tables for its window): not missing.
        missing = [key for key in result.missing_keys if key not in state_dict]
        problems += _key_problems('missing', missing) + _key_problems('unexpected', result.unexpected_keys)
    if not problems:
        return
    fitting = len(set(state_dict) & set(module.state_dict()))
    raise CheckpointMismatchError(
        f'{source} does not fit {type(module).__name__} ({fitting} of its {len(state_dict)} tensors have a '
        f'key of the model): ' + '; '.join(problems) + f'. {hint}')


def _key_problems(kind: str, keys: List[str]) -> List[str]:
    if not keys:
        return []
    shown = ', '.join(keys[:SHOWN_KEYS]) + (', ...' if len(keys) > SHOWN_KEYS else '')
    return [f'{len(keys)} {kind} keys ({shown})']
