import pytest
import torch
from mmpretrain.models.backbones import BEiTViT

from fdclip_mm.checkpoint import CheckpointFileError, CheckpointMismatchError
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.backbones.rel_pos_bias import geometric_resize_rel_pos_bias_table
from ...helpers.students import ARCH, randomize_, tiny

POS_TO_BEIT = {
    'ape': dict(use_abs_pos_emb=True, use_rel_pos_bias=False, use_shared_rel_pos_bias=False),
    'rpb': dict(use_abs_pos_emb=False, use_rel_pos_bias=True, use_shared_rel_pos_bias=False),
    'shared_rpb': dict(use_abs_pos_emb=False, use_rel_pos_bias=False, use_shared_rel_pos_bias=True),
}


@pytest.mark.parametrize('pos_embed', ['ape', 'rpb', 'shared_rpb'])
@pytest.mark.parametrize('out_type', ['raw', 'avg_featmap'])
def test_equals_mmpretrain_beit_on_equal_weights(pos_embed, out_type):
    beit = BEiTViT(
        arch=ARCH,
        img_size=32,
        patch_size=8,
        final_norm=out_type == 'raw',
        out_type=out_type,
        layer_scale_init_value=0.1,
        **POS_TO_BEIT[pos_embed])
    randomize_(beit)
    ours = tiny(pos_embed, out_type=out_type, final_norm=out_type == 'raw')
    ours.load_state_dict(beit.state_dict(), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    expected = beit(x)[-1]
    actual = ours(x)[-1]
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_output_types_and_shapes():
    x = torch.randn(2, 3, 32, 48)
    assert tiny()(x)[0].shape == (2, 1 + 4 * 6, 32)
    assert tiny(out_type='cls_token')(x)[0].shape == (2, 32)
    assert tiny(out_type='avg_featmap', final_norm=False)(x)[0].shape == (2, 32)
    maps = tiny(out_type='featmap', out_indices=(0, 1), final_norm=False)(x)
    assert [m.shape for m in maps] == [(2, 32, 4, 6)] * 2
    assert tiny().forward_features(x).shape == (2, 25, 32)


def test_avg_featmap_is_norm_of_mean_patch_tokens():
    model = randomize_(tiny(out_type='avg_featmap', final_norm=False))
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_features(x)
    expected = model.ln2(tokens[:, 1:].mean(1))
    torch.testing.assert_close(model(x)[0], expected)


@pytest.mark.parametrize('pos_embed', ['ape', 'rpb', 'shared_rpb'])
def test_explicit_attention_path_matches_sdpa(pos_embed):
    model = randomize_(tiny(pos_embed))
    x = torch.randn(2, 3, 32, 32)
    tokens, grid = model.embed(x)
    bias = model.rel_pos_bias(grid) if model.rel_pos_bias is not None else None
    for layer in model.layers:
        fast = layer(tokens, bias, grid)
        slow, attn = layer(tokens, bias, grid, return_attn=True)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
        assert attn.shape == (2, 2, 17, 17)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 17))
        tokens = fast
    maps = model.forward_attention(x)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 17, 17)


def test_shared_table_expands_into_per_layer_tables():
    shared = randomize_(tiny('shared_rpb'))
    per_layer = tiny('rpb')
    missing, unexpected = per_layer.load_state_dict(shared.state_dict(), strict=True)
    per_layer.eval()
    for layer in per_layer.layers:
        torch.testing.assert_close(layer.attn.rel_pos_bias.relative_position_bias_table,
                                   shared.rel_pos_bias.relative_position_bias_table)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(per_layer(x)[0], shared(x)[0])


def test_distilled_student_loads_strictly_into_a_dense_backbone():
    student = randomize_(tiny('shared_rpb', final_norm=True))
    dense = tiny('rpb', img_size=64, out_type='featmap', out_indices=(0, 1), final_norm=False)
    dense.load_state_dict(student.state_dict(), strict=True)
    assert dense.ln1 is None
    dense.eval()
    same_grid = tiny('shared_rpb', img_size=64, final_norm=True).eval()  # the student, its table resized as loaded
    same_grid.load_state_dict(student.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    tokens = same_grid.forward_features(x)  # ends with the final norm the dense backbone leaves out
    last = dense(x)[-1]
    assert last.shape == (1, 32, 8, 8)
    torch.testing.assert_close(same_grid.ln1(last.flatten(2).transpose(1, 2)), tokens[:, 1:], atol=1e-5, rtol=1e-5)


def test_loading_resizes_position_embeddings_like_on_the_fly():
    small = randomize_(tiny('ape', img_size=32))
    big = tiny('ape', img_size=48)
    big.load_state_dict(small.state_dict(), strict=True)
    big.eval()
    x = torch.randn(1, 3, 48, 48)
    # The 32-px model resizes its position embedding on the fly for a 48-px input: same result as loading resized.
    torch.testing.assert_close(big(x)[0], small(x)[0], atol=1e-5, rtol=1e-5)
    assert big(x)[0].shape == (1, 1 + 36, 32)


@pytest.mark.parametrize('pos_embed', ['rpb', 'shared_rpb'])
def test_loading_resizes_rpb_tables_as_the_official_fine_tuning(pos_embed):
    """A checkpoint of another grid: every RPB table resized as the official load_pretrained does (geometric), on
    larger and smaller square grids alike; on the fly, inputs of another size keep the offsets they share."""
    small = randomize_(tiny(pos_embed, img_size=32))
    for img_size in (48, 16):
        other = tiny(pos_embed, img_size=img_size)
        other.load_state_dict(small.state_dict(), strict=True)
        grid = (img_size // 8, ) * 2
        loaded = {k: v for k, v in other.state_dict().items() if k.endswith('relative_position_bias_table')}
        assert len(loaded) == (2 if pos_embed == 'rpb' else 1)
        for key, table in loaded.items():
            torch.testing.assert_close(
                table, geometric_resize_rel_pos_bias_table(small.state_dict()[key], (4, 4), grid), rtol=0, atol=0)


def test_beit_per_layer_checkpoint_keys_load():
    beit = randomize_(
        BEiTViT(arch=ARCH, img_size=32, patch_size=8, final_norm=True, out_type='raw', **POS_TO_BEIT['rpb']))
    keys = beit.state_dict().keys()
    assert 'layers.0.attn.relative_position_bias_table' in keys
    ours = tiny('rpb')
    ours.load_state_dict(beit.state_dict(), strict=True)
    torch.testing.assert_close(ours.layers[1].attn.rel_pos_bias.relative_position_bias_table,
                               beit.layers[1].attn.relative_position_bias_table)


def test_layer_depth_and_no_weight_decay():
    model = tiny('rpb')
    assert model.get_layer_depth('backbone.cls_token', 'backbone.') == (0, 4)
    assert model.get_layer_depth('backbone.patch_embed.projection.weight', 'backbone.') == (0, 4)
    assert model.get_layer_depth('backbone.layers.0.attn.qkv.weight', 'backbone.') == (1, 4)
    assert model.get_layer_depth('backbone.layers.1.ffn.layers.1.weight', 'backbone.') == (2, 4)
    assert model.get_layer_depth('backbone.ln1.weight', 'backbone.') == (3, 4)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (3, 4)
    # as the official code: RPB tables are decayed (their exemption is a constructor option)
    assert model.no_weight_decay() == {'cls_token'}
    assert tiny('ape').no_weight_decay() == {'cls_token', 'pos_embed'}
    assert tiny('shared_rpb').no_weight_decay() == {'cls_token'}


def test_init_matches_the_official_student_in_distribution():
    """Width 768 as FD-CLIP B/16: stds against the official init (timm's trunc_normal_ cut at plus/minus std)."""
    from timm.layers import trunc_normal_
    torch.manual_seed(0)
    model = FDViT(
        arch=dict(embed_dims=768, num_layers=2, num_heads=12, feedforward_channels=3072),
        img_size=64,
        patch_size=16,
        pos_embed='ape')

    def official(shape, div=1.0):
        return (trunc_normal_(torch.empty(shape), std=.02, a=-.02, b=.02) / div).std().item()

    layer0, layer1 = model.layers
    measured = {
        'qkv': (layer0.attn.qkv.weight, official((2304, 768))),
        'fc1': (layer0.ffn.layers[0][0].weight, official((3072, 768))),
        'proj block 0': (layer0.attn.proj.weight, official((768, 768), 2**0.5)),
        'proj block 1': (layer1.attn.proj.weight, official((768, 768), 2.0)),
        'fc2 block 1': (layer1.ffn.layers[1].weight, official((768, 3072), 2.0)),
        'patch embed': (model.patch_embed.projection.weight, official((768, 3, 16, 16))),
        'pos embed': (model.pos_embed, official((1, 17, 768))),
    }
    for name, (param, expected) in measured.items():
        assert param.std().item() == pytest.approx(expected, rel=0.03), name
        assert param.abs().max().item() <= 0.02 / (1 if 'block' not in name else 2**0.5) + 1e-7, name
    assert layer0.attn.qkv.weight.std().item() == pytest.approx(0.0108, rel=0.02)  # the official figure
    assert model.cls_token.abs().max().item() <= 0.02 and model.cls_token.std().item() < 0.015
    assert torch.count_nonzero(model.patch_embed.projection.bias) == 0
    assert torch.count_nonzero(layer0.attn.proj.bias) == 0 and torch.count_nonzero(layer0.attn.q_bias) == 0


def test_activation_checkpointing_gives_same_values_and_grads():
    plain = randomize_(tiny()).train()
    ckpt = tiny(with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.train()
    x = torch.randn(2, 3, 32, 32)
    plain.forward_features(x).square().sum().backward()
    ckpt.forward_features(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_stochastic_depth_is_linear_and_only_in_training():
    model = randomize_(tiny(drop_path_rate=0.3, arch=dict(ARCH, num_layers=4)))
    rates = [getattr(layer.drop_path, 'drop_prob', 0.0) for layer in model.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    torch.manual_seed(0)
    a = model(x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x)[0])


def test_archs_and_errors():
    # Table 4: B 768 wide, 12 layers, 12 heads, FFN 3072; L 1024, 24, 16, 4096.
    assert FDViT.arch_zoo['b'] == dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)
    assert FDViT.arch_zoo['large'] == dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096)
    assert FDViT('tiny', img_size=28, patch_size=14).embed_dims == 192
    with pytest.raises(ValueError, match='unknown arch'):
        FDViT('huge-ish')
    with pytest.raises(ValueError, match='custom arch'):
        FDViT(dict(embed_dims=32))
    with pytest.raises(ValueError, match='pos_embed'):
        tiny('rope')
    with pytest.raises(ValueError, match='not divisible'):
        tiny()(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match='out_indices'):
        tiny(out_indices=(5, ))


def test_pretrained_init_loads_exactly_or_names_the_keys_at_fault(tmp_path):
    arch = ARCH
    source = FDViT(arch=arch, img_size=32, patch_size=8)
    good = tmp_path / 'backbone.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}}, good)
    loaded = FDViT(
        arch=arch, img_size=32, patch_size=8, init_cfg=dict(type='Pretrained', checkpoint=str(good), prefix='backbone'))
    loaded.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    wider = FDViT(
        arch=dict(arch, embed_dims=48),
        img_size=32,
        patch_size=8,
        init_cfg=dict(type='Pretrained', checkpoint=str(good), prefix='backbone.'))
    with pytest.raises(CheckpointMismatchError, match=r'backbone.pth does not fit FDViT .*shape mismatches'):
        wider.init_weights()
    with pytest.raises(CheckpointFileError, match=r"no key starting with 'student\.'"):
        FDViT(
            arch=arch,
            img_size=32,
            patch_size=8,
            init_cfg=dict(type='Pretrained', checkpoint=str(good), prefix='student.')).init_weights()
    deeper = FDViT(
        arch=dict(arch, num_layers=3),
        img_size=32,
        patch_size=8,
        init_cfg=dict(type='Pretrained', checkpoint=str(good), prefix='backbone.'))
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(layers.2.'):
        deeper.init_weights()


def test_building_warns_nothing(recwarn):
    """BEiTViT's shared table, built then replaced, calls torch.meshgrid without ``indexing``; a user sees no warning
    of it (torch warns once per process: run alone, ``pytest -k warns_nothing``, this fails without the filter)."""
    for pos_embed in ('shared_rpb', 'rpb', 'ape'):
        FDViT(
            arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32),
            img_size=32,
            patch_size=8,
            pos_embed=pos_embed)
    assert not [str(w.message) for w in recwarn.list if 'meshgrid' in str(w.message)]
