"""ViTBlock: mmpretrain's BEiT layer with FD's attention, its residual branches each dropped once."""
import torch
from mmcv.cnn.bricks import drop
from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer

from fdclip_mm.models.backbones import Attention, DropPath, ViTBlock


def drop_path_draws(block: torch.nn.Module, monkeypatch) -> int:
    """How many per-sample drop-path masks one training forward of ``block`` draws."""
    draws = []
    real_rand = torch.rand

    def counting_rand(*args, **kwargs):
        draws.append(args)
        return real_rand(*args, **kwargs)

    x = torch.randn(2, 5, 8)
    monkeypatch.setattr(torch, 'rand', counting_rand)
    block.train()(x, None)
    monkeypatch.undo()
    return len(draws)


def test_each_residual_branch_is_dropped_once_where_mmpretrains_drops_the_ffn_twice(monkeypatch):
    ours = ViTBlock(8, 2, 16, drop_path_rate=0.5)
    theirs = BEiTTransformerEncoderLayer(8, 2, 16, 0.1, window_size=None, use_rel_pos_bias=False, drop_path_rate=0.5)
    assert isinstance(ours, BEiTTransformerEncoderLayer)
    assert isinstance(theirs.ffn.dropout_layer, drop.DropPath)  # in the FFN, and again around it in forward
    assert not isinstance(ours.ffn.dropout_layer, drop.DropPath) and isinstance(ours.drop_path, DropPath)
    assert drop_path_draws(theirs, monkeypatch) == 3  # attention branch once, FFN branch twice
    assert drop_path_draws(ours, monkeypatch) == 2


def test_the_block_keeps_fds_attention_and_the_official_init_through_init_weights():
    torch.manual_seed(0)
    block = ViTBlock(8, 2, 16, rel_pos_grid=(2, 2))
    assert isinstance(block.attn, Attention) and block.attn.rel_pos_bias is not None
    before = {k: v.clone() for k, v in block.state_dict().items()}
    block.init_weights()  # mmpretrain's layer redraws the FFN from a Xavier uniform here
    for key, value in block.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_equal_weights_give_mmpretrains_layer_output_without_drop_path():
    ours = ViTBlock(8, 2, 16).eval()
    theirs = BEiTTransformerEncoderLayer(8, 2, 16, 0.1, window_size=None, use_rel_pos_bias=False).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    assert ours.load_state_dict(theirs.state_dict(), strict=True)
    x, bias = torch.randn(2, 5, 8), torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(ours(x, bias), theirs(x, bias), atol=1e-5, rtol=1e-5)
