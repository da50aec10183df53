"""The teacher-target cache: written once by tools/cache_teacher_targets.py, read back by the distiller."""
import glob
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.structures import BaseDataElement

from fdclip_mm.models.algorithms.teacher_target_cache import (TargetCacheMismatchError, TeacherTargetCache,
                                                              pipeline_text, write_target_cache)
from fdclip_mm.models.feature_map import FeatureMap, feature_tokens
from fdclip_mm.models.teachers import teacher_config
from ...helpers.checkpoints import clip_visual_state_dict, tiny_vit_arch
from ...helpers.distiller import PIPELINE, batch, build, distill_config

RANDOM_PIPELINE = [PIPELINE[0], dict(type='RandomResizedCrop', scale=32, backend='pillow'), PIPELINE[2]]


def samples(n: int, root) -> list:
    """Data samples of the images ``root/img_<i>.png`` (the files :func:`cache_of` writes)."""
    return [BaseDataElement(metainfo=dict(img_path=osp.join(str(root), f'img_{i}.png'))) for i in range(n)]


def paths(n: int, root) -> list:
    return [s.img_path for s in samples(n, root)]


def cache_of(model, inputs, path: str) -> str:
    """A cache of ``model``'s teacher on ``inputs``, keyed by image files it writes beside ``path``."""
    with torch.no_grad():
        features = model.teacher(inputs['teachers'][0])
    keys = paths(features.patches.shape[0], osp.dirname(path))
    for key in keys:
        if not osp.exists(key):
            rewrite(key, key.encode())
    write_target_cache(
        path, keys, features, meta=dict(source='test', pipeline=PIPELINE, teacher=model.teacher_identity()))
    return path


def cache_tool_config(teacher: dict, dataset: dict) -> dict:
    """What tools/cache_teacher_targets.py reads of a config: the model and the training data."""
    return dict(
        default_scope='mmpretrain',
        model=dict(
            type='fdclip_mm.FeatureDistiller',
            teacher=teacher,
            student=dict(type='FDViT', arch=tiny_vit_arch(48, 2, 2, mlp_ratio=2), img_size=32, patch_size=8)),
        train_dataloader=dict(
            batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True), dataset=dataset))


def load_tool(name: str):
    import importlib.util
    repo = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    spec = importlib.util.spec_from_file_location(name, osp.join(repo, 'tools', f'{name}.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cached_targets_give_the_live_teacher_loss(tiny_clip_checkpoint, tmp_path):
    live = build(tiny_clip_checkpoint).eval()
    inputs = live.data_preprocessor(batch())['inputs']
    path = cache_of(live, inputs, str(tmp_path / 'targets.pth'))
    cached = build(tiny_clip_checkpoint, target_cache=path).eval()
    cached.load_state_dict(live.state_dict())
    cached.target_cache.check_run(paths(4, tmp_path), PIPELINE, cached.teacher_identity())
    with torch.no_grad():
        expected = live(inputs, samples(4, tmp_path), mode='loss')['loss']
        # the teacher is not run: its input can be anything
        got = cached(
            dict(inputs, teachers=(torch.full_like(inputs['teachers'][0], float('nan')), )),
            samples(4, tmp_path),
            mode='loss')['loss']
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=1e-4)  # float16 storage


def test_cache_lookup_errors_name_the_image_and_file(tiny_clip_checkpoint, tmp_path):
    model = build(tiny_clip_checkpoint).eval()
    inputs = model.data_preprocessor(batch())['inputs']
    path = cache_of(model, inputs, str(tmp_path / 'targets.pth'))
    cache = TeacherTargetCache(path)
    assert len(cache) == 4 and cache.token_shape == (17, 32)
    assert cache.meta == dict(source='test', pipeline=PIPELINE, teacher=model.teacher_identity())
    with pytest.raises(KeyError, match="'other.png' is not in the teacher target cache .*targets.pth"):
        cache.lookup([str(tmp_path / 'img_0.png'), 'other.png'])
    with pytest.raises(FileExistsError, match='--overwrite'):
        cache_of(model, inputs, path)
    with pytest.raises(FileNotFoundError, match='cache_teacher_targets.py'):
        TeacherTargetCache(str(tmp_path / 'missing.pth'))
    (tmp_path / 'text.pth').write_text('not a cache')
    with pytest.raises(
            ValueError,
            match=r'teacher target cache: \S*text.pth is not a PyTorch checkpoint.*cache_teacher_targets.py'):
        TeacherTargetCache(str(tmp_path / 'text.pth'))
    wrong = str(tmp_path / 'wrong.pth')
    with pytest.raises(ValueError, match=r"meta\['pipeline'\].*meta\['teacher'\].*are required"):
        write_target_cache(wrong, ['a.png'], FeatureMap(torch.zeros(1, 16, 2, 2)), meta=dict(pipeline=PIPELINE))
    image = str(tmp_path / 'img_0.png')
    write_target_cache(
        wrong, [image], FeatureMap(torch.zeros(1, 16, 2, 2)), meta=dict(pipeline=PIPELINE, teacher=dict()))
    assert TeacherTargetCache(wrong).token_shape == (4, 16) and not TeacherTargetCache(wrong).with_cls
    with pytest.raises(ValueError, match=r'wrong.pth holds 16-channel tokens; this teacher gives 32'):
        build(tiny_clip_checkpoint, target_cache=wrong)
    unchecked = build(tiny_clip_checkpoint, target_cache=path)
    with pytest.raises(RuntimeError, match='were not checked against the cache.*TargetCacheCheckHook'):
        unchecked(inputs, samples(4, tmp_path), mode='loss')
    unchecked.target_cache.check_run(paths(4, tmp_path), PIPELINE, unchecked.teacher_identity())
    with pytest.raises(ValueError, match='img_path'):
        unchecked(inputs, None, mode='loss')


def test_a_cache_refuses_runs_with_another_pipeline_or_images(tiny_clip_checkpoint, tmp_path):
    model = build(tiny_clip_checkpoint).eval()
    cache = TeacherTargetCache(cache_of(model, model.data_preprocessor(batch())['inputs'], str(tmp_path / 't.pth')))
    teacher = model.teacher_identity()
    with pytest.raises(
            TargetCacheMismatchError,
            match=r't.pth holds the targets of the views of the training pipeline .*Resize.*'
            r'but this run trains on .*RandomResizedCrop.*cache_teacher_targets.py CONFIG --out \S*t.pth --overwrite'):
        cache.check_run(paths(4, tmp_path), RANDOM_PIPELINE, teacher)
    with pytest.raises(ValueError, match=r'\(4 images\) lacks 2 of this run\'s training images \(x.png, y.png\)'):
        cache.check_run(paths(1, tmp_path) + ['x.png', 'y.png'], PIPELINE, teacher)
    assert not cache.checked
    # tuples, lists and ConfigDicts of the same pipeline are the same pipeline
    from mmengine.config import ConfigDict
    cache.check_run(
        paths(2, tmp_path)[1:],
        [ConfigDict(t) for t in PIPELINE[:1]] + [dict(type='Resize', scale=[32, 32], backend='pillow'), PIPELINE[2]],
        teacher)
    assert cache.checked


def read(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def rewrite(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


def test_a_cache_refuses_images_that_changed_since_it_was_written(tiny_clip_checkpoint, tmp_path):
    model = build(tiny_clip_checkpoint).eval()
    cache = TeacherTargetCache(cache_of(model, model.data_preprocessor(batch())['inputs'], str(tmp_path / 't.pth')))
    teacher, images = model.teacher_identity(), paths(4, tmp_path)
    # rewritten with the same bytes (a copy without -p, a touch): a new time, the recorded content: accepted
    rewrite(images[0], read(images[0]))
    os.utime(images[0], ns=(1, 1))
    cache.check_run(images, PIPELINE, teacher)
    # same size, other pixels (the same path): refused, naming the image
    rewrite(images[1], bytes(reversed(read(images[1]))))
    with pytest.raises(
            TargetCacheMismatchError,
            match=r'holds the targets of 1 training image\(s\) that changed since it was written: \S*img_1.png '
            r'\(modified since the cache was written \(same size, other content\)\).*'
            r'cache_teacher_targets.py cfg.py --out \S*t.pth --overwrite'):
        cache.check_run(images, PIPELINE, teacher, config='cfg.py')
    rewrite(images[2], read(images[2]) + b'more')
    with pytest.raises(TargetCacheMismatchError, match=r'2 training image\(s\).*img_1.png .*img_2.png \(\d+ bytes, '):
        cache.check_run(images, PIPELINE, teacher)
    os.remove(images[3])
    with pytest.raises(TargetCacheMismatchError, match=r'img_3.png \(cannot be read: No such file'):
        cache.check_run(images[3:], PIPELINE, teacher)


def test_a_cache_refuses_another_teacher_naming_both(tiny_clip_checkpoint, tmp_path):
    model = build(tiny_clip_checkpoint).eval()
    cache = TeacherTargetCache(cache_of(model, model.data_preprocessor(batch())['inputs'], str(tmp_path / 't.pth')))
    images = paths(4, tmp_path)
    other = str(tmp_path / 'other_clip.pth')
    torch.save(clip_visual_state_dict(seed=1), other)
    with pytest.raises(
            TargetCacheMismatchError,
            match=r'was written by another teacher than this run\'s \(checkpoint content \(SHA-256\): cache '
            rf'{tiny_clip_checkpoint} \([0-9a-f]{{12}}\.\.\.\), run {other} \([0-9a-f]{{12}}\.\.\.\)\).*'
            'validation runs this one; rewrite it for this run with'):
        cache.check_run(images, PIPELINE, build(other).teacher_identity())
    # the same file elsewhere is the same teacher
    moved = str(tmp_path / 'moved.pth')
    shutil.copyfile(tiny_clip_checkpoint, moved)
    cache.check_run(images, PIPELINE, build(moved).teacher_identity())
    tiny = dict(arch=tiny_vit_arch(32, 2, 2), patch_size=8)
    with pytest.raises(TargetCacheMismatchError, match=r'precision: cache float32, run bfloat16'):
        cache.check_run(
            images, PIPELINE,
            build(teacher_config('clip', tiny_clip_checkpoint, img_size=32, dtype='bfloat16',
                                 **tiny)).teacher_identity())
    with pytest.raises(TargetCacheMismatchError, match=r'input size: cache \[32, 32\], run \[48, 48\]'):
        cache.check_run(images, PIPELINE,
                        build(teacher_config('clip', tiny_clip_checkpoint, img_size=48, **tiny)).teacher_identity())
    with pytest.raises(TargetCacheMismatchError, match=r'input normalisation: cache .*, run .*to_rgb.: False'):
        bgr = dict(type='DistillDataPreprocessor', to_rgb=False)
        cache.check_run(images, PIPELINE, build(tiny_clip_checkpoint, data_preprocessor=bgr).teacher_identity())
    assert not cache.checked


@pytest.mark.slow
def test_cache_tool_writes_the_teachers_tokens_and_refuses_random_pipelines(tiny_clip_checkpoint, tiny_clip_teacher,
                                                                            image_folder, tmp_path):
    from mmengine.config import Config
    tool = load_tool('cache_teacher_targets')
    pipeline = PIPELINE
    config = tmp_path / 'cfg.py'
    Config(
        cache_tool_config(tiny_clip_teacher,
                          dict(type='CustomDataset', data_root=image_folder, with_label=False,
                               pipeline=pipeline))).dump(str(config))
    out = str(tmp_path / 'targets.pth')
    assert tool.main([str(config), '--out', out, '--batch-size', '2']) == 0
    cache = TeacherTargetCache(out)
    model = build(tiny_clip_checkpoint).eval()
    assert cache.meta['teacher'] == model.teacher_identity()
    assert cache.meta['teacher']['checkpoint'] == osp.abspath(tiny_clip_checkpoint)
    assert pipeline_text(cache.meta['pipeline']) == pipeline_text(PIPELINE)
    from mmengine.registry import DATASETS, DefaultScope, init_default_scope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        dataset = DATASETS.build(Config.fromfile(str(config)).train_dataloader.dataset)
    item = dataset[2]
    data = model.data_preprocessor(dict(inputs=[item['inputs']], data_samples=[item['data_samples']]))
    with torch.no_grad():
        expected = feature_tokens(model.teacher(data['inputs']['teachers'][0]), with_cls=True)
    torch.testing.assert_close(cache.lookup([item['data_samples'].img_path]), expected, rtol=1e-3, atol=2e-3)
    assert tool.main([str(config), '--out', out]) == 1  # kept unless --overwrite
    random_pipeline = [pipeline[0], dict(type='RandomResizedCrop', scale=32, backend='pillow'), pipeline[2]]
    cfg = Config.fromfile(str(config))
    cfg.train_dataloader.dataset.pipeline = random_pipeline
    cfg.dump(str(config))
    with pytest.raises(ValueError, match='pipeline is random'):
        tool.main([str(config), '--out', str(tmp_path / 'other.pth')])
    flip_pipeline = [pipeline[0], pipeline[1], dict(type='RandomFlip', prob=0.5, direction='horizontal'), pipeline[2]]
    cfg.train_dataloader.dataset.pipeline = flip_pipeline
    cfg.dump(str(config))
    with pytest.raises(ValueError, match='pipeline is random'):
        tool.main([str(config), '--out', str(tmp_path / 'other.pth')])


def test_cache_tool_refuses_a_repeated_dataset_before_the_teacher_runs(tiny_clip_teacher, image_folder, tmp_path,
                                                                       capsys):
    from mmengine.config import Config
    tool = load_tool('cache_teacher_targets')
    config = tmp_path / 'cfg.py'
    Config(
        cache_tool_config(
            tiny_clip_teacher,
            dict(
                type='RepeatDataset',
                times=8,
                dataset=dict(type='CustomDataset', data_root=image_folder, with_label=False,
                             pipeline=PIPELINE)))).dump(str(config))
    with pytest.raises(
            ValueError,
            match=r'\(RepeatDataset, times=8\) lists 96 items but 12 distinct images.*'
            r'train_dataloader.dataset.times=1'):
        tool.main([str(config), '--out', str(tmp_path / 'targets.pth')])
    assert '[cache]' not in capsys.readouterr().out  # refused before the teacher's first batch
    assert tool.main(
        [str(config), '--out',
         str(tmp_path / 'targets.pth'), '--cfg-options', 'train_dataloader.dataset.times=1']) == 0
    assert len(TeacherTargetCache(str(tmp_path / 'targets.pth'))) == 12


@pytest.mark.slow
def test_cache_tool_prints_no_pkg_resources_warning(tmp_path):
    """mmengine imports setuptools' deprecated pkg_resources while it parses an inheriting config."""
    import sys

    from ...helpers.tools import TOOLS, call
    (tmp_path / 'cfg.py').write_text("_base_ = ['mmpretrain::_base_/default_runtime.py']\n")
    proc = call([sys.executable, osp.join(TOOLS, 'cache_teacher_targets.py'), 'cfg.py', '--out', 'x.pth'], tmp_path)
    # the config has no model: the tool stops once the config is parsed
    assert proc.returncode == 1 and "no attribute 'model'" in proc.stderr
    assert 'pkg_resources' not in proc.stderr


@pytest.mark.slow
def test_a_run_reading_a_cache_is_checked_before_its_first_step(tiny_clip_teacher, image_folder, tmp_path):
    """The cache tool's config trains with the cache; a run with random crops is refused where it is built,
    and a runner that does not check the cache (mmengine's own) is refused at its first step."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from fdclip_mm.engine import build_checked_runner
    tool = load_tool('cache_teacher_targets')
    config = tmp_path / 'cfg.py'
    Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'w'), PIPELINE, None)).dump(str(config))
    cache = str(tmp_path / 'targets.pth')
    assert tool.main([str(config), '--out', cache, '--cfg-options', 'train_dataloader.dataset.times=1']) == 0

    runner = build_checked_runner(
        Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'ok'), PIPELINE, cache)))
    runner.train()
    log = open(glob.glob(str(tmp_path / 'ok' / '*' / '*.log'))[0]).read()
    assert f'Teacher targets come from {cache} (12 images' in log and runner.iter == 2

    compiled_cfg = Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'compiled'), PIPELINE, cache))
    compiled_cfg.compile = dict(backend='aot_eager')  # the student's blocks compiled, the targets from the cache
    compiled = build_checked_runner(compiled_cfg)
    compiled.train()
    log = open(glob.glob(str(tmp_path / 'compiled' / '*' / '*.log'))[0]).read()
    assert 'Teacher targets come from' in log and "torch.compile {'backend': 'aot_eager'} of" in log
    assert compiled.iter == 2

    random_run = build_checked_runner(
        Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'rnd'), RANDOM_PIPELINE, cache)))
    with pytest.raises(ValueError, match='but this run trains on .*RandomResizedCrop'):
        random_run.train()
    assert random_run.iter == 0 and not glob.glob(str(tmp_path / 'rnd' / '*.pth'))

    plain = Runner.from_cfg(
        Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'plain'), RANDOM_PIPELINE, cache)))
    with pytest.raises(RuntimeError, match='were not checked against the cache'):
        plain.train()

    # another teacher file than the cache's: refused before the first step, naming both
    other = str(tmp_path / 'other_clip.pth')
    torch.save(clip_visual_state_dict(seed=1), other)
    other_teacher = dict(tiny_clip_teacher, checkpoint=other)
    swapped = build_checked_runner(
        Config(distill_config(other_teacher, image_folder, str(tmp_path / 'swapped'), PIPELINE, cache)))
    with pytest.raises(
            TargetCacheMismatchError,
            match=f'another teacher .*cache {tiny_clip_teacher["checkpoint"]} .*run {other} '):
        swapped.train()
    assert swapped.iter == 0

    # one training image's pixels changed (same path) after the cache was written: refused, naming it
    import mmcv
    changed = sorted(glob.glob(osp.join(image_folder, 'train', '*.jpg')))[3]
    mmcv.imwrite(mmcv.imread(changed)[::-1].copy(), changed)
    stale = build_checked_runner(
        Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'stale'), PIPELINE, cache)))
    with pytest.raises(TargetCacheMismatchError, match=f'1 training image.*changed since it was written: {changed} '):
        stale.train()
    assert stale.iter == 0 and not glob.glob(str(tmp_path / 'stale' / '*.pth'))
