"""TargetCacheCheckHook on stand-in runners: what it compares, what it refuses, what it logs (the real cache
and runs: tests/models/algorithms/test_teacher_target_cache.py)."""
from types import SimpleNamespace

import pytest

from fdclip_mm.engine import TargetCacheCheckHook
from fdclip_mm.models.algorithms.teacher_target_cache import TargetCacheMismatchError

PIPELINE = [dict(type='fdclip_mm.CheckedLoadImageFromFile'), dict(type='Resize', scale=(32, 32))]


class Cache:
    """Records what ``mismatch`` was asked; answers ``verdict``."""

    def __init__(self, verdict=None, checked=False):
        self.verdict, self.checked, self.asked = verdict, checked, None
        self.path, self.token_shape = 'targets.pth', (17, 32)
        self.meta = dict(teacher=dict(checkpoint='clip.pth', dtype='float32'))

    def __len__(self):
        return 2

    def mismatch(self, paths, pipeline, teacher, config):
        self.asked = (paths, pipeline, teacher, config)
        return self.verdict


class Cfg(dict):
    """A run's config: its ``filename`` and the ``get`` of mmengine's ``Config``."""
    filename = 'configs/fd.py'


class Dataset:

    def __len__(self):
        return 2

    def get_data_info(self, index):
        return dict(img_path=f'img_{index}.jpg')


def runner(cache, dataset_cfg=dict(type='RepeatDataset', times=2, dataset=dict(pipeline=PIPELINE))):
    lines = []
    model = SimpleNamespace(target_cache=cache, teacher_identity=lambda: dict(checkpoint='clip.pth'))
    cfg = Cfg(train_dataloader=dict(dataset=dataset_cfg)) if dataset_cfg else Cfg()
    return SimpleNamespace(
        model=model,
        cfg=cfg,
        train_dataloader=SimpleNamespace(dataset=Dataset()),
        logger=SimpleNamespace(info=lines.append),
        lines=lines)


def test_a_fitting_cache_is_marked_checked_and_named_once():
    cache = Cache()
    run = runner(cache)
    TargetCacheCheckHook().before_train(run)
    paths, pipeline, teacher, config = cache.asked
    assert paths == ['img_0.jpg', 'img_1.jpg']
    # found through RepeatDataset, as plain lists and dicts
    assert pipeline == [dict(type='fdclip_mm.CheckedLoadImageFromFile'), dict(type='Resize', scale=[32, 32])]
    assert teacher == dict(checkpoint='clip.pth') and config == 'configs/fd.py'
    assert cache.checked
    (line, ) = run.lines
    assert line.startswith('Teacher targets come from targets.pth (2 images, 17 tokens of 32 channels each, '
                           'teacher clip.pth in float32;')
    TargetCacheCheckHook().before_train(run)  # checked already: not compared again
    assert len(run.lines) == 1


def test_a_cache_that_does_not_fit_is_refused_with_the_verdict():
    cache = Cache(verdict='the pipeline differs: RandomResizedCrop added')
    with pytest.raises(TargetCacheMismatchError, match='the pipeline differs: RandomResizedCrop added'):
        TargetCacheCheckHook().before_train(runner(cache))
    assert not cache.checked


def test_a_config_without_a_training_pipeline_is_refused():
    with pytest.raises(ValueError, match=r"target_cache='targets.pth': the run's config has no train_dataloader"):
        TargetCacheCheckHook().before_train(runner(Cache(), dataset_cfg=None))


def test_models_without_a_cache_are_left_alone():
    run = runner(None, dataset_cfg=None)  # nothing to check against either: no error
    TargetCacheCheckHook().before_train(run)
    assert run.lines == []
