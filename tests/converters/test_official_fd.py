"""The authors' released FD models, converted: every kind at tiny size against timm's reference of the official
model, the fine-tuning start the official ``load_pretrained`` builds, and the real shapes against our configs."""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from fdclip_mm.checkpoint import load_state_dict_exactly, read_official_fd_checkpoint, read_state_dict
from fdclip_mm.converters.official_fd import (DISTILLED, FINE_TUNED, OfficialFDModel, OfficialKeyError,
                                              convert_official_fd, identify_official_fd, official_to_ours)
from fdclip_mm.converters.to_classifier import convert_fd_to_classifier
from fdclip_mm.models.backbones import FDViT
from fdclip_mm.models.backbones.rel_pos_bias import geometric_resize_rel_pos_bias_table
from fdclip_mm.registry import MODELS as FDCLIP_MODELS
from .official_fd_layout import (clip_teacher_state, distilled_state, official_swinv2_state, official_vit_state,
                                 swin_teacher_state, tiny_beit, tiny_swinv2, vit_teacher_state, write_official_file)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128)
SWIN_ARCH = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], extra_norm_every_n_blocks=0)
CONFIG = {'MODEL': {'TYPE': 'vit', 'VIT': {'USE_SHARED_RPB': True}}, 'DEV': {'PRED_FEAT': 'CLIP_400M'}}


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Models are built as mmpretrain's tools build them, whatever scope an earlier test left as the default."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def images(size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def classifier(backbone: dict, num_classes: int, in_channels: int, neck=None):
    model = MMPRETRAIN_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=neck,
            head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=in_channels)))
    return model.eval()


@pytest.mark.parametrize('patch,img_size', [(8, 32), (14, 28)])  # ViT-B/16's and ViT-L/14's patch sizes
def test_distilled_vit_is_the_student_fd_to_backbone_writes(tmp_path, patch, img_size):
    """A distilled ViT file (full save, yacs config) -> the student backbone file; the student computes the
    official student's tokens; the file has the keys, layout and meta of fd_to_backbone.py's output."""
    official = tiny_beit(img_size=img_size, patch=patch)
    src, dst = str(tmp_path / 'released.pth'), str(tmp_path / 'backbone.pth')
    write_official_file(src, distilled_state(official_vit_state(official), 32, clip_teacher_state(patch=patch), 48),
                        CONFIG)
    model, tensors = convert_official_fd(src, dst)
    assert (model.stage, model.kind, model.teacher, model.img_size) == (DISTILLED, 'vit', 'CLIP ViT-B/16', img_size)
    assert model.teacher_channels == 48

    saved = torch.load(dst, weights_only=True)
    assert set(saved) == {'state_dict', 'meta'} and saved['meta']['out_indices'] == []
    student = FDViT(arch=ARCH, img_size=img_size, patch_size=patch).eval()  # our FD configs' student, tiny
    assert set(saved['state_dict']) == set(student.state_dict())
    load_state_dict_exactly(student, saved['state_dict'], dst)
    x = images(img_size)
    with torch.no_grad():
        torch.testing.assert_close(student.forward_features(x), official.forward_features(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('img_size', [32, 48])  # the distilled grid, and another (4 x 4 -> 6 x 6 patches)
def test_fine_tuning_start_is_the_official_load_pretrained(tmp_path, img_size):
    """The converted student through fd_to_classifier.py into the fine-tuning backbone (per-layer RPB, mean
    pooling, fresh fc_norm) computes what the official fine-tuning model computes after load_pretrained: the shared
    table copied into every block, resized on another grid (geometric), norm.* left out."""
    official = tiny_beit()
    src, backbone_file, cls_file = (str(tmp_path / n) for n in ('released.pth', 'backbone.pth', 'cls.pth'))
    write_official_file(src, distilled_state(official_vit_state(official), 32, None, 48))
    convert_official_fd(src, backbone_file)
    convert_fd_to_classifier(backbone_file, cls_file)
    ours = FDViT(
        arch=ARCH, img_size=img_size, patch_size=8, pos_embed='rpb', out_type='avg_featmap', final_norm=False).eval()
    load_state_dict_exactly(ours, read_state_dict(cls_file, 'backbone.'), cls_file)

    reference = tiny_beit(img_size=img_size, distilled=False, num_classes=0, seed=9)
    start = {k: v for k, v in official.state_dict().items() if not k.startswith(('norm.', 'rel_pos_bias.'))}
    shared = official.state_dict()['rel_pos_bias.relative_position_bias_table']
    table = geometric_resize_rel_pos_bias_table(shared, (4, 4), (img_size // 8, ) * 2)
    start.update({f'blocks.{i}.attn.relative_position_bias_table': table.clone() for i in range(2)})
    start.update({'fc_norm.weight': torch.ones(32), 'fc_norm.bias': torch.zeros(32)})
    reference.load_state_dict(start, strict=True)
    x = images(img_size)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(ours(x)[0], expected, rtol=1e-4, atol=1e-5)


def test_fine_tuned_vit_is_an_mmpretrain_classifier(tmp_path):
    """A fine-tuned ViT file (model only) -> ImageClassifier (FDViT + LinearClsHead): the official logits."""
    official = tiny_beit(distilled=False, num_classes=5)
    src, dst = str(tmp_path / 'released.pth'), str(tmp_path / 'cls.pth')
    write_official_file(src, official_vit_state(official))
    model, _ = convert_official_fd(src, dst)
    assert (model.stage, model.kind, model.num_classes, model.teacher) == (FINE_TUNED, 'vit', 5, None)
    ours = classifier(
        dict(
            type='fdclip_mm.FDViT',
            arch=ARCH,
            img_size=32,
            patch_size=8,
            pos_embed='rpb',
            out_type='avg_featmap',
            final_norm=False), 5, 32)
    load_state_dict_exactly(ours, read_state_dict(dst), dst)
    x = images(32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mode='tensor'), official(x), rtol=1e-4, atol=1e-5)


def swin_backbone() -> dict:
    return dict(
        type='mmpretrain.SwinTransformerV2', arch=SWIN_ARCH, img_size=64, window_size=[4, 4, 4, 2], out_indices=(3, ))


def test_distilled_swinv2_is_mmpretrains_swin_student(tmp_path):
    """A distilled SwinV2 file (EsViT teacher) -> mmpretrain's SwinTransformerV2 as our EsViT FD config builds
    it (the last window shrunk to the map); it computes the official student's tokens."""
    official = tiny_swinv2()
    src, dst = str(tmp_path / 'released.pth'), str(tmp_path / 'backbone.pth')
    state = distilled_state(official_swinv2_state(official), 128, swin_teacher_state(), 128)
    write_official_file(src, state, {'MODEL': {'TYPE': 'swin_v2'}, 'DEV': {'PRED_FEAT': 'ESVIT'}})
    model, _ = convert_official_fd(src, dst)
    assert (model.stage, model.kind, model.teacher, model.img_size) == (DISTILLED, 'swinv2', 'EsViT Swin-B', 64)
    student = MMPRETRAIN_MODELS.build(swin_backbone())
    student.eval()  # (mmpretrain's SwinTransformerV2.train returns None)
    backbone = read_state_dict(dst)
    assert set(backbone) == set(student.state_dict())
    load_state_dict_exactly(student, backbone, dst)
    x = images(64)
    with torch.no_grad():
        torch.testing.assert_close(
            student(x)[0], official.forward_features(x).permute(0, 3, 1, 2), rtol=1e-4, atol=1e-5)


def test_fine_tuned_swinv2_is_an_mmpretrain_classifier(tmp_path):
    official = tiny_swinv2(num_classes=5)
    src, dst = str(tmp_path / 'released.pth'), str(tmp_path / 'cls.pth')
    write_official_file(src, official_swinv2_state(official))
    model, _ = convert_official_fd(src, dst)
    assert (model.stage, model.kind, model.num_classes) == (FINE_TUNED, 'swinv2', 5)
    ours = classifier(swin_backbone(), 5, 128, neck=dict(type='GlobalAveragePooling'))
    load_state_dict_exactly(ours, read_state_dict(dst), dst)
    x = images(64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mode='tensor'), official(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('pred_feat,teacher_state,teacher', [
    ('DINO', vit_teacher_state(), 'DINO ViT-B/16'),
    ('DEIT', vit_teacher_state(), 'DeiT ViT-B/16'),
    (None, vit_teacher_state(), 'DINO or DeiT ViT-B/16 (the weights do not say which)'),
    (None, clip_teacher_state(width=1024, patch=14), 'CLIP ViT-L/14'),
    (None, swin_teacher_state(), 'EsViT Swin-B'),
    (None, None, None),
])
def test_the_teacher_where_the_file_shows_it(tmp_path, pred_feat, teacher_state, teacher):
    """From the config's DEV.PRED_FEAT, else from the teacher's weights; DINO and DeiT look alike without a config."""
    src = str(tmp_path / 'released.pth')
    state = distilled_state(official_vit_state(tiny_beit()), 32, teacher_state, 48)
    write_official_file(src, state, {'DEV': {'PRED_FEAT': pred_feat}} if pred_feat else None)
    assert identify_official_fd(read_official_fd_checkpoint(src)).teacher == teacher


def official_real_shapes(kind: str, stage: str, depth: int = 0) -> dict:
    """The official model's tensors at the released shapes, on the meta device (shapes only); ``depth`` blocks
    instead of the released number for a ViT, if given."""
    from timm.models.beit import Beit
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    with torch.device('meta'):
        if kind.startswith('vit'):
            width, layers, heads, patch = (768, 12, 12, 16) if kind == 'vit-b' else (1024, 24, 16, 14)
            model = Beit(
                patch_size=patch,
                embed_dim=width,
                depth=depth or layers,
                num_heads=heads,
                qkv_bias=True,
                use_abs_pos_emb=False,
                use_rel_pos_bias=stage == FINE_TUNED,
                use_shared_rel_pos_bias=stage == DISTILLED,
                init_values=0.1,
                num_classes=1000 if stage == FINE_TUNED else 0,
                global_pool='avg' if stage == FINE_TUNED else 'token')
            state = official_vit_state(model)
        else:
            model = SwinTransformerV2(
                embed_dim=128,
                depths=(2, 2, 18, 2),
                num_heads=(4, 8, 16, 32),
                window_size=14,
                num_classes=1000 if stage == FINE_TUNED else 0)
            state = official_swinv2_state(model)
    state = {k: torch.empty(v.shape, dtype=v.dtype, device='meta') for k, v in state.items()}
    if stage == FINE_TUNED:
        return state
    teacher = {'vit-b': ('CLIP', 768, 16), 'vit-l': ('CLIP', 1024, 14), 'swin': ('Swin', 128, 4)}[kind]
    teacher_state = clip_teacher_state(teacher[1], teacher[2]) if teacher[0] == 'CLIP' else swin_teacher_state()
    width = 1024 if kind != 'vit-b' else 768
    return {
        **{
            'encoder.' + k: v
            for k, v in state.items()
        },
        'decoder.0.weight': torch.empty(width, state['norm.weight'].shape[0], 1, device='meta'),
        'decoder.0.bias': torch.empty(width, device='meta'),
        **{
            'feature_model.' + k: torch.empty(v.shape, device='meta')
            for k, v in teacher_state.items()
        },
    }


def config_model_state(config: str, stage: str, depth: int = 0) -> dict:
    """The state dict of our config's model (the student of a distillation config); ``depth`` blocks instead of the
    config's for a ViT, if given (the keys of every block have the same shapes)."""
    cfg = Config.fromfile(osp.join(REPO, config))
    backbone = cfg.model.student if stage == DISTILLED else cfg.model.backbone
    if depth and backbone.type.endswith('FDViT'):
        backbone.arch = dict(FDViT.arch_zoo[backbone.arch], num_layers=depth)
    if stage == DISTILLED:
        return FDCLIP_MODELS.build(dict(backbone, _scope_='fdclip_mm')).state_dict()  # as the distiller builds it
    return MMPRETRAIN_MODELS.build(dict(cfg.model, backbone=dict(backbone, init_cfg=None))).state_dict()


@pytest.mark.parametrize('kind,arch,teacher', [('vit-b', 'ViT-B/16', 'CLIP ViT-B/16'),
                                               ('vit-l', 'ViT-L/14', 'CLIP ViT-L/14'),
                                               ('swin', 'SwinV2-B', 'EsViT Swin-B')])
@pytest.mark.parametrize('stage', [DISTILLED, FINE_TUNED])
def test_released_shapes_fit_the_configs_the_metafile_names(kind, arch, teacher, stage):
    """At the released shapes: the file is recognised, and what we write has exactly the keys and shapes of the
    model of the config it is for (the student of the distillation config; the classifier of the fine-tuning
    config, whose metafile entry names the released file). ViTs are compared at 2 blocks to keep this fast."""
    from fdclip_mm.checkpoint import OfficialFDCheckpoint
    pred_feat = {'CLIP ViT-B/16': 'CLIP_400M', 'CLIP ViT-L/14': 'CLIP_400M_Large', 'EsViT Swin-B': 'ESVIT'}[teacher]
    config = {'DEV': {'PRED_FEAT': pred_feat}}
    model = identify_official_fd(OfficialFDCheckpoint('released.pth', official_real_shapes(kind, stage), config))
    assert (model.stage, model.arch, model.teacher, model.img_size) == (stage, arch, teacher, 224)
    assert model.describe().startswith(f'{stage} FD {arch} (teacher: {teacher}) at 224 px')

    depth = 2 if kind.startswith('vit') else 0
    checkpoint = OfficialFDCheckpoint('released.pth', official_real_shapes(kind, stage, depth), config)
    ours = official_to_ours(checkpoint, identify_official_fd(checkpoint))
    distill_config, finetune_config = model.configs()
    expected = config_model_state(distill_config if stage == DISTILLED else finetune_config, stage, depth)
    assert sorted(ours) == sorted(expected)
    wrong = {k: (tuple(v.shape), tuple(expected[k].shape)) for k, v in ours.items() if v.shape != expected[k].shape}
    assert not wrong


@pytest.mark.parametrize('teacher,config',
                         [('DINO ViT-B/16', 'configs/finetune_in1k/fd-dino-vit-b16_16xb128-100e_in1k.py'),
                          ('DeiT ViT-B/16', 'configs/finetune_in1k/fd-deit-vit-b16_16xb128-100e_in1k.py')])
def test_dino_and_deit_have_their_fine_tuning_configs(teacher, config):
    from fdclip_mm.converters.official_fd import CONFIGS
    assert CONFIGS[('ViT-B/16', teacher)][1] == config
    assert osp.isfile(osp.join(REPO, config))


def test_files_that_are_not_released_models_are_refused(tmp_path):
    ours = str(tmp_path / 'ours.pth')
    torch.save({'state_dict': {'student.cls_token': torch.zeros(1, 1, 8)}, 'meta': {}}, ours)
    with pytest.raises(
            OfficialKeyError,
            match=r'ours\.pth is not a model of the official FD code: found keys under '
            r"\['student\.'\].*expected a distilled file \(encoder\.\* student"):
        convert_official_fd(ours, str(tmp_path / 'x.pth'))
    no_projector = str(tmp_path / 'no_projector.pth')
    state = {
        k: v
        for k, v in distilled_state(official_vit_state(tiny_beit()), 32, None, 48).items()
        if not k.startswith('decoder.')
    }
    write_official_file(no_projector, state)
    with pytest.raises(OfficialKeyError, match=r'no projector \(decoder\.0\.weight\)'):
        convert_official_fd(no_projector, str(tmp_path / 'x.pth'))
    k_bias = str(tmp_path / 'k_bias.pth')
    state = distilled_state(official_vit_state(tiny_beit()), 32, None, 48)
    state['encoder.blocks.0.attn.k_bias'] = torch.zeros(32)  # the official VIT_WITHKBIAS option: not released
    write_official_file(k_bias, state)
    with pytest.raises(
            OfficialKeyError,
            match=r"k_bias.pth \(student\): the tensor 'blocks.0.attn.k_bias' has no "
            'counterpart in FDViT'):
        convert_official_fd(k_bias, str(tmp_path / 'x.pth'))
    assert not osp.exists(tmp_path / 'x.pth')


def test_a_released_layout_file_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    witness = tmp_path / 'ran'

    class Payload:

        def __reduce__(self):
            return (os.system, (f'touch {witness}', ))

    src = str(tmp_path / 'malicious.pth')
    write_official_file(src, official_vit_state(tiny_beit(distilled=False)), CONFIG, extra={'max_accuracy': Payload()})
    from fdclip_mm.checkpoint import CheckpointFileError
    with pytest.raises(
            CheckpointFileError,
            match=r'malicious\.pth holds Python objects that are not weights '
            r'\(.*(posix|os)\.system'):
        convert_official_fd(src, str(tmp_path / 'x.pth'))
    assert not witness.exists() and not osp.exists(tmp_path / 'x.pth')


def test_a_fine_tuned_files_teacher_from_its_config_tag(tmp_path):
    """Fine-tuning configs name no teacher feature; their TAG does (fd_finetune__<teacher>__...). Without a config,
    the architecture's released models are the candidates."""
    src = str(tmp_path / 'released.pth')
    write_official_file(src, official_vit_state(tiny_beit(distilled=False)), {
        'TAG': 'fd_finetune__deit_vit_base__img224__300ep',
        'DEV': {
            'PRED_FEAT': ''
        }
    })
    assert identify_official_fd(read_official_fd_checkpoint(src)).teacher == 'DeiT ViT-B/16'
    write_official_file(src, official_vit_state(tiny_beit(distilled=False)))
    model = identify_official_fd(read_official_fd_checkpoint(src))
    assert model.teacher is None and model.configs() is None and model.candidate_configs() == {}
    b16 = OfficialFDModel(stage=FINE_TUNED, kind='vit', arch='ViT-B/16', teacher=None, img_size=224)
    assert sorted(b16.candidate_configs()) == ['CLIP ViT-B/16', 'DINO ViT-B/16', 'DeiT ViT-B/16']
