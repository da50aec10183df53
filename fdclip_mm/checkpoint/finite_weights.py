"""Weights with NaN or infinite values are refused where they are loaded, naming the file and the tensors.

A teacher with one NaN weight gives NaN targets: the run then only meets it as a non-finite loss at its first
step, and skipping such steps (``nonfinite_loss='skip'``) skips every step and ends with an untrained student.
"""
from typing import Mapping

import torch

#: How many offending tensors an error message lists.
SHOWN_TENSORS = 5


class NonFiniteWeightsError(ValueError):
    """A state dict holding NaN or infinite values; the message names the file and the tensors."""


def refuse_nonfinite_weights(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raises when a floating-point tensor of ``state_dict`` holds a NaN or an infinity.

    Args:
        state_dict: The tensors (entries that are not floating-point tensors are ignored).
        source: The file they come from, for the message.

    Raises:
        NonFiniteWeightsError: Naming ``source``, how many tensors are affected, and the first ones with their
            count of NaN and infinite values.
    """
    bad = []
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan = int(torch.isnan(value).sum())
            bad.append(f'{key} ({nan} NaN, {int(torch.isinf(value).sum())} inf of {value.numel()})')
    if bad:
        shown = '; '.join(bad[:SHOWN_TENSORS]) + ('; ...' if len(bad) > SHOWN_TENSORS else '')
        raise NonFiniteWeightsError(f'{source} holds non-finite weights in {len(bad)} tensor(s): {shown}. '
                                    'Training from it can only give non-finite losses; use an intact file')
