"""Weights with NaN or infinite values are refused, naming the file and the tensors."""
import pytest
import torch

from fdclip_mm.checkpoint import NonFiniteWeightsError, refuse_nonfinite_weights


def test_nonfinite_tensors_are_named_with_their_counts():
    good = {'a': torch.ones(3), 'steps': torch.tensor([3]), 'name': 'x'}
    refuse_nonfinite_weights(good, 'f.pth')
    nan, inf = float('nan'), float('inf')
    bad = dict(good, b=torch.tensor([1., nan, inf, -inf]), c=torch.full((2, ), nan))
    with pytest.raises(
            NonFiniteWeightsError,
            match=r'^f.pth holds non-finite weights in 2 tensor\(s\): b \(1 NaN, 2 inf of 4\); c \(2 NaN, 0 inf of 2\)'
    ):
        refuse_nonfinite_weights(bad, 'f.pth')
    half = {f't{i}': torch.tensor([float('nan')], dtype=torch.float16) for i in range(7)}
    with pytest.raises(NonFiniteWeightsError, match=r'in 7 tensor\(s\): t0 .*; t4 \(1 NaN, 0 inf of 1\); \.\.\.'):
        refuse_nonfinite_weights(half, 'half.pth')
