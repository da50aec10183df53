"""LayerDecayOptimWrapperConstructor: exact lr / weight decay of named parameters, built from mmpretrain, mmdet
and mmseg model configs in their own default scopes."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope

from fdclip_mm.engine.layer_decay_optim_constructor import LayerDecayOptimWrapperConstructor, lr_and_wd_by_name
from ..helpers.checkpoints import tiny_vit_arch

LR, WD, RATE = 1e-3, 0.05, 0.5
TINY = tiny_vit_arch(32, 2, 2, mlp_ratio=2)
# 2 blocks -> depths 0 (embeddings) .. 3 (top); scale = RATE ** (3 - depth)
S0, S1, S2, S3 = RATE**3, RATE**2, RATE**1, 1.0


def optim_cfg(**paramwise):
    return dict(
        type='OptimWrapper',
        constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD),
        paramwise_cfg=dict(layer_decay_rate=RATE, **paramwise))


def build_in_scope(scope: str, model_cfg: dict, optim: dict):
    """Builds the model with ``scope``'s registry and its optimizer, as that library's Runner would."""
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        from mmengine.registry import MODELS
        model = MODELS.build(model_cfg)
        optim_wrapper = build_optim_wrapper(model, optim)
    return model, lr_and_wd_by_name(optim_wrapper.optimizer)


def expect(table, name, scale, wd):
    lr, decay = table[name]
    assert lr == pytest.approx(LR * scale, rel=1e-12), name
    assert decay == pytest.approx(wd), name


def fdvit(**kwargs):
    cfg = dict(type='fdclip_mm.FDViT', arch=TINY, img_size=32, patch_size=8)
    cfg.update(kwargs)
    return cfg


def test_mmpretrain_image_classifier():
    model_cfg = dict(
        type='ImageClassifier',
        backbone=fdvit(pos_embed='rpb', out_type='avg_featmap', final_norm=False),
        head=dict(type='LinearClsHead', num_classes=4, in_channels=32))
    model, table = build_in_scope('mmpretrain', model_cfg, optim_cfg())
    assert set(table) == {n for n, _ in model.named_parameters()}
    expect(table, 'backbone.cls_token', S0, 0.)
    expect(table, 'backbone.patch_embed.projection.weight', S0, WD)
    expect(table, 'backbone.patch_embed.projection.bias', S0, 0.)
    expect(table, 'backbone.layers.0.attn.qkv.weight', S1, WD)
    expect(table, 'backbone.layers.0.attn.q_bias', S1, 0.)
    expect(table, 'backbone.layers.0.attn.v_bias', S1, 0.)
    expect(table, 'backbone.layers.0.gamma_1', S1, 0.)
    expect(table, 'backbone.layers.0.ln1.weight', S1, 0.)
    expect(table, 'backbone.layers.0.attn.rel_pos_bias.relative_position_bias_table', S1, WD)  # decayed (official)
    expect(table, 'backbone.layers.1.ffn.layers.0.0.weight', S2, WD)
    expect(table, 'backbone.layers.1.ffn.layers.1.bias', S2, 0.)
    expect(table, 'backbone.ln2.weight', S3, 0.)
    expect(table, 'head.fc.weight', S3, WD)
    expect(table, 'head.fc.bias', S3, 0.)


def test_shared_rpb_sits_at_the_top_and_frozen_params_are_left_out():
    model_cfg = dict(
        type='ImageClassifier',
        backbone=fdvit(pos_embed='shared_rpb', out_type='avg_featmap'),
        head=dict(type='LinearClsHead', num_classes=4, in_channels=32))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        from mmengine.registry import MODELS
        model = MODELS.build(model_cfg)
        model.backbone.patch_embed.requires_grad_(False)
        table = lr_and_wd_by_name(build_optim_wrapper(model, optim_cfg()).optimizer)
    expect(table, 'backbone.rel_pos_bias.relative_position_bias_table', S3, WD)
    expect(table, 'backbone.ln1.weight', S3, 0.)
    assert not any(n.startswith('backbone.patch_embed') for n in table)


def test_mmdet_mask_rcnn_config(tmp_path):
    from mmengine.config import Config
    path = tmp_path / 'mask_rcnn_fdvit.py'
    path.write_text("_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'\ndefault_scope = 'mmdet'\n")
    cfg = Config.fromfile(str(path))
    cfg.model.backbone = fdvit(pos_embed='rpb', out_type='featmap', out_indices=(0, 1))
    cfg.model.neck.in_channels = [32, 32]
    model, table = build_in_scope('mmdet', cfg.model, optim_cfg())
    assert type(model).__name__ == 'MaskRCNN'
    assert set(table) == {n for n, p in model.named_parameters() if p.requires_grad}
    expect(table, 'backbone.cls_token', S0, 0.)
    expect(table, 'backbone.layers.0.attn.proj.weight', S1, WD)
    expect(table, 'backbone.layers.1.attn.proj.bias', S2, 0.)
    expect(table, 'neck.lateral_convs.0.conv.weight', S3, WD)
    expect(table, 'neck.lateral_convs.0.conv.bias', S3, 0.)
    expect(table, 'rpn_head.rpn_conv.weight', S3, WD)
    expect(table, 'roi_head.bbox_head.fc_cls.weight', S3, WD)
    expect(table, 'roi_head.mask_head.conv_logits.bias', S3, 0.)


def test_mmseg_encoder_decoder_with_custom_keys():
    model_cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.] * 3, std=[1.] * 3),
        backbone=fdvit(pos_embed='rpb', out_type='featmap', out_indices=(0, 1)),
        decode_head=dict(
            type='FCNHead',
            in_channels=32,
            in_index=1,
            channels=16,
            num_convs=1,
            num_classes=3,
            norm_cfg=dict(type='BN', requires_grad=True)),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=32,
            in_index=0,
            channels=16,
            num_convs=1,
            num_classes=3,
            norm_cfg=dict(type='BN', requires_grad=True)))
    optim = optim_cfg(custom_keys={'decode_head': dict(lr_mult=10.), 'cls_token': dict(decay_mult=2.)})
    model, table = build_in_scope('mmseg', model_cfg, optim)
    assert type(model).__name__ == 'EncoderDecoder'
    expect(table, 'backbone.cls_token', S0, 2 * WD)
    expect(table, 'backbone.layers.1.attn.qkv.weight', S2, WD)
    expect(table, 'decode_head.convs.0.conv.weight', 10 * S3, WD)
    expect(table, 'decode_head.convs.0.bn.weight', 10 * S3, 0.)
    expect(table, 'auxiliary_head.convs.0.conv.weight', S3, WD)
    expect(table, 'auxiliary_head.convs.0.bn.bias', S3, 0.)


def test_groups_table_and_errors():
    model_cfg = dict(
        type='ImageClassifier',
        backbone=fdvit(pos_embed='rpb', out_type='avg_featmap'),
        head=dict(type='LinearClsHead', num_classes=4, in_channels=32))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        from mmengine.registry import MODELS
        model = MODELS.build(model_cfg)
    constructor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD)), dict(layer_decay_rate=RATE))
    groups = constructor.param_groups(model)
    # one group per (depth, lr, wd): 4 depths x {decay, no decay}
    assert [(g['layer_depth'], g['weight_decay'] > 0) for g in groups] == [(d, w) for d in range(4) for w in (0, 1)]
    assert sum(len(g['params']) for g in groups) == len(list(model.parameters()))
    table = constructor.format_table(groups)
    assert 'depth_1_decay' in table and 'backbone.layers.0.*' in table

    bad = LayerDecayOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=LR)), dict(backbone='head'))
    with pytest.raises(TypeError, match='get_layer_depth'):
        bad.param_groups(model)
    missing = LayerDecayOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=LR)), dict(backbone='nope'))
    with pytest.raises(AttributeError, match='nope'):
        missing.param_groups(model)
    assert torch.is_tensor(groups[0]['params'][0])


def test_rel_pos_bias_decay_option_in_both_constructors():
    """RPB tables are decayed by default (official); rel_pos_bias_decay_mult=0 exempts them in either constructor."""
    model_cfg = dict(
        type='ImageClassifier',
        backbone=fdvit(pos_embed='rpb', out_type='avg_featmap', final_norm=False),
        head=dict(type='LinearClsHead', num_classes=4, in_channels=32))
    key = 'backbone.layers.0.attn.rel_pos_bias.relative_position_bias_table'
    _, table = build_in_scope('mmpretrain', model_cfg, optim_cfg(rel_pos_bias_decay_mult=0.))
    expect(table, key, S1, 0.)
    expect(table, 'backbone.layers.0.attn.qkv.weight', S1, WD)
    trainable = dict(
        type='OptimWrapper',
        constructor='fdclip_mm.TrainableOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.))
    for mult, wd in ((None, WD), (0., 0.)):
        cfg = dict(trainable, paramwise_cfg=dict(trainable['paramwise_cfg']))
        if mult is not None:
            cfg['paramwise_cfg']['rel_pos_bias_decay_mult'] = mult
        model, _ = build_in_scope('mmpretrain', model_cfg, optim_cfg())
        optim = build_optim_wrapper(model, cfg).optimizer
        param = dict(model.named_parameters())[key]
        group = next(g for g in optim.param_groups if any(p is param for p in g['params']))
        assert group['weight_decay'] == wd
