"""load_state_dict_exactly: state dicts load exactly or not at all, the error lists what does not fit;
revise_keys: mmengine's key patterns."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from fdclip_mm.checkpoint import CheckpointMismatchError, load_state_dict_exactly
from fdclip_mm.checkpoint.exact_loading import SHOWN_KEYS, revise_keys


def test_load_state_dict_exactly_lists_what_does_not_fit():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    good = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    load_state_dict_exactly(model, good, 'good.pth')
    assert torch.equal(model[0].weight, good['0.weight'])

    with pytest.raises(
            CheckpointMismatchError,
            match=r'backbone.pth does not fit Sequential \(0 of its 2 '
            r'tensors.*4 missing keys \(0.weight, 0.bias, 1.weight, 1.bias\); 2 unexpected keys'):
        load_state_dict_exactly(model, {'w': torch.ones(1), 'b': torch.ones(1)}, 'backbone.pth')
    wide = dict(good, **{'1.weight': torch.ones(2, 16)})
    with pytest.raises(CheckpointMismatchError, match=r'1 shape mismatches: size mismatch for 1.weight'):
        load_state_dict_exactly(model, wide, 'wide.pth')
    with pytest.raises(CheckpointMismatchError, match='1 missing keys'):
        load_state_dict_exactly(model, {k: v for k, v in good.items() if k != '1.bias'}, 'partial.pth')


def test_the_error_lists_a_few_keys_of_each_kind_and_says_the_hint():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(SHOWN_KEYS)])
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_dict_exactly(model, {}, 'empty.pth', hint='Convert it first.')
    message = str(err.value)
    assert f'{2 * SHOWN_KEYS} missing keys (0.weight, 0.bias, 1.weight, 1.bias, 2.weight, ...)' in message
    assert message.startswith('empty.pth does not fit Sequential (0 of its 0 tensors')
    assert message.endswith('. Convert it first.')


class RecomputedTable(nn.Module):
    """Drops ``table`` from what it loads, to recompute it (as mmpretrain's SwinTransformerV2 does)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.register_buffer('table', torch.zeros(3))
        self._register_load_state_dict_pre_hook(self._drop_table)

    @staticmethod
    def _drop_table(state_dict, prefix, *args):
        state_dict.pop(prefix + 'table', None)


def test_a_key_the_modules_load_hook_drops_is_not_missing():
    model = RecomputedTable()
    state = {k: v + 1 for k, v in model.state_dict().items()}
    load_state_dict_exactly(model, state, 'swin.pth')
    assert torch.equal(model.linear.bias, state['linear.bias']) and torch.equal(model.table, torch.zeros(3))
    # a key the file does not have is still missing
    with pytest.raises(CheckpointMismatchError, match=r'1 missing keys \(table\)'):
        load_state_dict_exactly(model, {k: v for k, v in state.items() if k != 'table'}, 'no_table.pth')


def test_revise_keys_applies_the_patterns_in_order_and_keeps_the_metadata():
    state = OrderedDict([('module.backbone.w', torch.ones(1)), ('module.head.b', torch.zeros(1))])
    state._metadata = {'': {'version': 1}}
    revised = revise_keys(state, [(r'^module\.', ''), (r'^backbone\.', 'student.')])
    assert list(revised) == ['student.w', 'head.b']
    assert revised['student.w'] is state['module.backbone.w']
    assert revised._metadata == {'': {'version': 1}}
    assert not hasattr(revise_keys({'a': torch.ones(1)}, []), '_metadata')
