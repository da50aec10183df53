"""The repository's config files, by kind (paths relative to the repository root), and what every config holds."""
import glob
import os.path as osp
from pathlib import Path

from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ALL_CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p and '_deprecation_' not in Path(p).read_text())  # old names: tests/configs/test_old_names.py


def is_classification_config(path: str) -> bool:
    """ImageNet fine-tuning configs and the classification demo (tested in tests/configs/test_finetune_configs.py)."""
    return path.startswith(osp.join('configs', 'finetune_in1k', '')) or osp.basename(path).startswith('finetune_')


def is_distillation_config(path: str) -> bool:
    """Distillation configs (configs/fd/ and the distillation demo); dense-task configs have their own tests."""
    return path.startswith(osp.join('configs', 'fd', '')) or osp.basename(path).startswith('fd_')


def assert_inferencers_find_the_loader(cfg) -> None:
    """The test pipeline starts with the libraries' own ``LoadImageFromFile``, the transform mmpretrain's
    inferencers remove and mmdet's / mmseg's replace by name (any other loader fails there)."""
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[0]['type'] == 'LoadImageFromFile', f'test pipeline starts with {pipeline[0]["type"]}'


def base_config(name: str) -> Config:
    """``configs/_base_/<name>``, loaded."""
    return Config.fromfile(osp.join(REPO, 'configs', '_base_', name))
