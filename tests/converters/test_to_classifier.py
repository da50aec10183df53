"""Distilled student / OpenAI CLIP -> mmpretrain classifier checkpoints: exact layouts, strict loads, values."""
import sys

import pytest
import torch
from mmengine.registry import DefaultScope, init_default_scope

from fdclip_mm.converters.clip_to_vit import clip_to_vit_state_dict, load_clip_as_vit
from fdclip_mm.converters.to_classifier import (LAYER_RPB_KEY, SHARED_RPB_KEY, convert_fd_to_classifier,
                                                expand_shared_rpb)
from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.backbones import FDViT
from ..helpers.checkpoints import mmpretrain_clip_vit
from ..helpers.scripts import load_script

ARCH = dict(embed_dims=48, num_layers=3, num_heads=2, feedforward_channels=96)


def classifier_cfg(backbone: dict, checkpoint: str, width: int) -> dict:
    backbone = dict(backbone, init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.'))
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        head=dict(
            type='LinearClsHead',
            num_classes=5,
            in_channels=width,
            init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001, bias=0.)))


def build_classifier(cfg: dict):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        from mmengine.registry import MODELS
        model = MODELS.build(cfg)
        model.init_weights()
    return model


def backbone_state(path: str) -> dict:
    state = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in state)
    return {k[len('backbone.'):]: v for k, v in state.items()}


def test_expand_shared_rpb_by_value():
    table = torch.randn(52, 2)
    state = {SHARED_RPB_KEY: table, 'layers.0.ln1.weight': torch.ones(4), 'layers.2.ln1.weight': torch.ones(4)}
    out = expand_shared_rpb(state)
    assert SHARED_RPB_KEY in state and SHARED_RPB_KEY not in out  # input untouched
    for i in range(3):
        torch.testing.assert_close(out[LAYER_RPB_KEY.format(i)], table, rtol=0, atol=0)
    out[LAYER_RPB_KEY.format(0)].add_(1.)  # copies, not views
    torch.testing.assert_close(out[LAYER_RPB_KEY.format(1)], table, rtol=0, atol=0)
    assert expand_shared_rpb({'layers.0.x': torch.ones(1)}) == {'layers.0.x': torch.ones(1)}


def test_distillation_checkpoint_to_classifier(tiny_clip_teacher, tmp_path):
    distiller = FeatureDistiller(
        student=dict(type='FDViT', arch=ARCH, img_size=32, patch_size=8), teacher=tiny_clip_teacher)
    with torch.no_grad():
        for p in distiller.student.parameters():
            p.add_(torch.randn_like(p))
    src = str(tmp_path / 'epoch_3.pth')
    torch.save({'state_dict': distiller.state_dict(), 'meta': {}}, src)
    dst = str(tmp_path / 'cls.pth')
    convert_fd_to_classifier(src, dst)
    saved = backbone_state(dst)

    student = distiller.student.state_dict()
    shared = student[SHARED_RPB_KEY]
    backbone_cfg = dict(
        type='fdclip_mm.FDViT',
        arch=ARCH,
        img_size=32,
        patch_size=8,
        pos_embed='rpb',
        out_type='avg_featmap',
        final_norm=False)
    fresh = FDViT(**{k: v for k, v in backbone_cfg.items() if k != 'type'})
    result = fresh.load_state_dict(saved, strict=True)  # raises on any missing / unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    assert set(saved) == set(fresh.state_dict())

    model = build_classifier(classifier_cfg(backbone_cfg, dst, ARCH['embed_dims']))
    for i, layer in enumerate(model.backbone.layers):  # shared -> per-layer, by value
        torch.testing.assert_close(layer.attn.rel_pos_bias.relative_position_bias_table.data, shared, rtol=0, atol=0)
    for name, value in model.backbone.state_dict().items():
        reference = student.get(name, saved.get(name))
        if name.startswith('layers.') and name.endswith('relative_position_bias_table'):
            reference = shared
        torch.testing.assert_close(value, reference, rtol=0, atol=0, msg=name)
    assert model.backbone.ln1 is None
    torch.testing.assert_close(model.backbone.ln2.weight.data, torch.ones(ARCH['embed_dims']))
    assert model.head.fc.weight.std() < 1e-4 and model.head.fc.bias.abs().max() == 0  # x0.001 head init


def test_clip_to_mmpretrain_vit_equals_the_clip_tower(tiny_clip_checkpoint):
    from mmpretrain.models import VisionTransformer
    cfg = mmpretrain_clip_vit(final_norm=True, out_type='raw')
    cfg.pop('type')
    cfg['layer_cfgs'] = dict(act_cfg=dict(type='QuickGELU'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        vit = VisionTransformer(**cfg)
    vit.eval()  # mmpretrain's BaseBackbone.train returns None
    state = load_clip_as_vit(tiny_clip_checkpoint, final_norm=True, head_norm=False)
    result = vit.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    open_clip = pytest.importorskip('open_clip')  # the reference: open_clip's own tower on the same file
    tower = open_clip.transformer.VisionTransformer(
        image_size=32,
        patch_size=8,
        width=32,
        layers=2,
        heads=2,
        mlp_ratio=4.0,
        output_dim=16,
        act_layer=open_clip.transformer.QuickGELU,
        output_tokens=True)
    visual = torch.load(tiny_clip_checkpoint, weights_only=True)
    tower.load_state_dict({k[len('visual.'):]: v for k, v in visual.items()}, strict=True)
    tower.eval()
    tower.proj = None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cls_token, patches = tower(x)
        torch.testing.assert_close(vit(x)[0], torch.cat([cls_token[:, None], patches], 1), rtol=1e-4, atol=1e-4)


def test_clip_tool_writes_a_classifier_checkpoint(tiny_clip_checkpoint, tmp_path, monkeypatch):
    dst = str(tmp_path / 'clip_cls.pth')
    monkeypatch.setattr(sys, 'argv', ['clip_to_classifier.py', tiny_clip_checkpoint, dst])
    load_script('tools/model_converters/clip_to_classifier.py').main()
    saved = backbone_state(dst)
    assert 'ln1.weight' not in saved and 'proj' not in saved and saved['pos_embed'].dtype == torch.float32
    model = build_classifier(classifier_cfg(mmpretrain_clip_vit(False, 'avg_featmap'), dst, 32))
    result = model.backbone.load_state_dict(saved, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(model.backbone.pos_embed.data, saved['pos_embed'], rtol=0, atol=0)
    visual = torch.load(tiny_clip_checkpoint, weights_only=True)
    torch.testing.assert_close(
        model.backbone.layers[1].ffn.layers[1].weight.data,
        visual['visual.transformer.resblocks.1.mlp.c_proj.weight'],
        rtol=0,
        atol=0)


def test_fd_tool_and_errors(tmp_path, monkeypatch):
    student = FDViT(arch=ARCH, img_size=32, patch_size=8)
    src = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': student.state_dict()}, src)  # the output of fd_to_backbone.py
    dst = str(tmp_path / 'cls.pth')
    monkeypatch.setattr(sys, 'argv', ['fd_to_classifier.py', src, dst, '--shared-rpb'])
    load_script('tools/model_converters/fd_to_classifier.py').main()
    saved = backbone_state(dst)
    assert SHARED_RPB_KEY in saved and 'ln2.weight' in saved and 'ln1.weight' not in saved
    with pytest.raises(KeyError, match='counterpart'):
        clip_to_vit_state_dict({'transformer.resblocks.0.ls_1.gamma': torch.ones(2)})
