"""The teacher-target cache: written once by tools/cache_teacher_targets.py, read back by the distiller."""
import os.path as osp

import pytest
import torch
from mmengine.structures import BaseDataElement

from fdclip_mm.models.algorithms.teacher_target_cache import TeacherTargetCache, write_target_cache
from fdclip_mm.models.feature_map import FeatureMap, feature_tokens
from .test_feature_distiller import batch, build


def samples(n: int):
    return [BaseDataElement(metainfo=dict(img_path=f'img_{i}.png')) for i in range(n)]


def cache_of(model, inputs, path: str) -> str:
    with torch.no_grad():
        features = model.teacher(inputs['teacher'])
    write_target_cache(path, [s.img_path for s in samples(features.patches.shape[0])], features,
                       meta=dict(source='test'))
    return path


def test_cached_targets_give_the_live_teacher_loss(tiny_clip_checkpoint, tmp_path):
    live = build(tiny_clip_checkpoint).eval()
    inputs = live.data_preprocessor(batch())['inputs']
    path = cache_of(live, inputs, str(tmp_path / 'targets.pth'))
    cached = build(tiny_clip_checkpoint, target_cache=path).eval()
    cached.load_state_dict(live.state_dict())
    with torch.no_grad():
        expected = live(inputs, samples(4), mode='loss')['loss']
        # the teacher is not run: its input can be anything
        got = cached(dict(inputs, teacher=torch.full_like(inputs['teacher'], float('nan'))), samples(4),
                     mode='loss')['loss']
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-4)  # float16 storage


def test_cache_lookup_errors_name_the_image_and_file(tiny_clip_checkpoint, tmp_path):
    model = build(tiny_clip_checkpoint).eval()
    inputs = model.data_preprocessor(batch())['inputs']
    path = cache_of(model, inputs, str(tmp_path / 'targets.pth'))
    cache = TeacherTargetCache(path)
    assert len(cache) == 4 and cache.token_shape == (17, 32) and cache.meta == dict(source='test')
    with pytest.raises(KeyError, match="'other.png' is not in the teacher target cache .*targets.pth"):
        cache.lookup(['img_0.png', 'other.png'])
    with pytest.raises(FileExistsError, match='--overwrite'):
        cache_of(model, inputs, path)
    with pytest.raises(FileNotFoundError, match='cache_teacher_targets.py'):
        TeacherTargetCache(str(tmp_path / 'missing.pth'))
    (tmp_path / 'text.pth').write_text('not a cache')
    with pytest.raises(ValueError, match=r'teacher target cache: \S*text.pth is not a PyTorch checkpoint.*cache_teacher_targets.py'):
        TeacherTargetCache(str(tmp_path / 'text.pth'))
    wrong = str(tmp_path / 'wrong.pth')
    write_target_cache(wrong, ['a.png'], FeatureMap(torch.zeros(1, 16, 2, 2)), meta={})
    assert TeacherTargetCache(wrong).token_shape == (4, 16) and not TeacherTargetCache(wrong).with_cls
    with pytest.raises(ValueError, match=r'wrong.pth holds 16-channel tokens; this teacher gives 32'):
        build(tiny_clip_checkpoint, target_cache=wrong)
    with pytest.raises(ValueError, match='img_path'):
        build(tiny_clip_checkpoint, target_cache=path)(inputs, None, mode='loss')


def test_cache_tool_writes_the_teachers_tokens_and_refuses_random_pipelines(tiny_clip_checkpoint, tiny_clip_teacher,
                                                                           image_folder, tmp_path):
    from mmengine.config import Config
    import importlib.util
    repo = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    spec = importlib.util.spec_from_file_location('cache_tool', osp.join(repo, 'tools', 'cache_teacher_targets.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    pipeline = [dict(type='fdclip_mm.CheckedLoadImageFromFile'),
                dict(type='Resize', scale=(32, 32), backend='pillow'), dict(type='PackInputs')]
    config = tmp_path / 'cfg.py'
    Config(dict(
        default_scope='mmpretrain',
        model=dict(type='fdclip_mm.FeatureDistiller',
                   student=dict(type='FDViT', arch=dict(embed_dims=48, num_layers=2, num_heads=2,
                                                        feedforward_channels=96), img_size=32, patch_size=8),
                   teacher=tiny_clip_teacher),
        train_dataloader=dict(batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
                              dataset=dict(type='CustomDataset', data_root=image_folder, with_label=False,
                                           pipeline=pipeline)),
    )).dump(str(config))
    out = str(tmp_path / 'targets.pth')
    assert tool.main([str(config), '--out', out, '--batch-size', '2']) == 0
    cache = TeacherTargetCache(out)
    assert cache.meta['teacher_type'] == 'fdclip_mm.BackboneTeacher'
    model = build(tiny_clip_checkpoint).eval()
    from mmengine.registry import DATASETS, DefaultScope, init_default_scope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        dataset = DATASETS.build(Config.fromfile(str(config)).train_dataloader.dataset)
    item = dataset[2]
    data = model.data_preprocessor(dict(inputs=[item['inputs']], data_samples=[item['data_samples']]))
    with torch.no_grad():
        expected = feature_tokens(model.teacher(data['inputs']['teacher']), with_cls=True)
    torch.testing.assert_close(cache.lookup([item['data_samples'].img_path]), expected, rtol=1e-3, atol=2e-3)
    assert tool.main([str(config), '--out', out]) == 1  # kept unless --overwrite
    random_pipeline = [pipeline[0], dict(type='RandomResizedCrop', scale=32, backend='pillow'), pipeline[2]]
    cfg = Config.fromfile(str(config))
    cfg.train_dataloader.dataset.pipeline = random_pipeline
    cfg.dump(str(config))
    with pytest.raises(ValueError, match='pipeline is random'):
        tool.main([str(config), '--out', str(tmp_path / 'other.pth')])
