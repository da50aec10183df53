"""``--cfg-options data_root=DIR`` moves every dataset and evaluator file of every config under DIR."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from fdclip_mm.engine import merge_cfg_options, move_data_root
from fdclip_mm.engine.config_options import DATA_SECTION_SUFFIXES

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True) if '_base_' not in p)
NEW_ROOT = '/datasets/elsewhere'


def strings(value, path=''):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f'{path}.{key}')
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from strings(item, f'{path}[{i}]')


def data_sections(cfg):
    return {k: cfg[k] for k in cfg if k.endswith(DATA_SECTION_SUFFIXES) and cfg[k] is not None}


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_data_root_option_moves_all_data_of_the_config(config):
    cfg = Config.fromfile(config)
    old = cfg.get('data_root')
    assert isinstance(old, str) and old, f'{config} has no top-level data_root'
    roots = [(where, v) for where, v in strings(data_sections(cfg)) if where.endswith('.data_root')]
    assert roots, f'{config}: no dataset names a data_root'

    moved = move_data_root(cfg, NEW_ROOT)
    assert moved >= len(roots)
    assert cfg.data_root == NEW_ROOT
    left = [(where, v) for where, v in strings(data_sections(cfg))
            if v.rstrip('/') == old.rstrip('/') or v.startswith(old.rstrip('/') + '/')]
    assert not left, f'{config}: still under {old}: {left}'
    for where, value in strings(data_sections(cfg)):
        if where.endswith('.data_root'):
            assert value.startswith(NEW_ROOT), (where, value)


def test_explicit_dataset_keys_win_and_other_paths_stay():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'demo', 'fd_dinov2-vits14_fdvit-t14-6l_demo.py'))
    teacher = cfg.model.teacher.checkpoint
    merge_cfg_options(cfg, {
        'data_root': 'photos/',
        'val_dataloader.dataset.data_root': 'held_out',
        'train_dataloader.batch_size': 4
    })
    assert cfg.train_dataloader.dataset.dataset.data_root == 'photos'
    assert cfg.val_dataloader.dataset.data_root == 'held_out'
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.model.teacher.checkpoint == teacher


def test_data_root_option_without_a_top_level_data_root_is_refused():
    cfg = Config(dict(train_dataloader=dict(dataset=dict(data_root='data/x'))))
    with pytest.raises(KeyError, match='no top-level data_root'):
        merge_cfg_options(cfg, {'data_root': 'data/y'})
