"""Corrupted or truncated images: a clear error naming the file, or (option) skipped, counted and logged."""
import glob
import io
import logging
import os.path as osp

import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from fdclip_mm.datasets import CheckedLoadImageFromFile, UnreadableImageError, is_truncated_jpeg
from ..helpers.config_lists import REPO
from ..helpers.images import write_files
from ..helpers.tiny_fd_configs import shrink

FD_CONFIG = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')


def test_mmcv_loader_silently_decodes_a_truncated_jpeg(tmp_path):
    """Why the checked loader exists: OpenCV fills the missing rows, no error at all."""
    paths = write_files(tmp_path)
    assert LoadImageFromFile()(dict(img_path=paths['truncated.jpg']))['img'].shape == (48, 40, 3)
    with pytest.raises(AssertionError, match='garbage.jpg'):
        LoadImageFromFile()(dict(img_path=paths['garbage.jpg']))


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_good_images_load_as_with_mmcv(tmp_path, backend):
    paths = write_files(tmp_path)
    for name in ('good.jpg', 'trailer.jpg', 'good.png'):
        ours = CheckedLoadImageFromFile(imdecode_backend=backend)(dict(img_path=paths[name]))
        theirs = LoadImageFromFile(imdecode_backend=backend)(dict(img_path=paths[name]))
        np.testing.assert_array_equal(ours['img'], theirs['img'])
        assert ours['img_shape'] == ours['ori_shape'] == (48, 40)
    assert not is_truncated_jpeg(open(paths['trailer.jpg'], 'rb').read())


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
@pytest.mark.parametrize('name', ['truncated.jpg', 'garbage.jpg', 'empty.jpg', 'missing.jpg'])
def test_bad_image_raises_naming_the_file(tmp_path, backend, name):
    path = write_files(tmp_path)[name]
    with pytest.raises(UnreadableImageError, match=f'cannot load image {path}: '):
        CheckedLoadImageFromFile(imdecode_backend=backend)(dict(img_path=path))


def test_skip_mode_returns_none_counts_and_warns_once_per_file(tmp_path):
    paths = write_files(tmp_path)
    load = CheckedLoadImageFromFile(on_error='skip')
    logger, stream = MMLogger.get_current_instance(), io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        for _ in range(3):  # a dataset redraws: every bad file comes back
            assert load(dict(img_path=paths['truncated.jpg'])) is None
            assert load(dict(img_path=paths['good.jpg']))['img'].shape == (48, 40, 3)
            assert load(dict(img_path=paths['garbage.jpg'])) is None
            assert load(dict(img_path=paths['empty.jpg'])) is None
    finally:
        logger.removeHandler(handler)
    assert load.skipped == 9
    out = stream.getvalue()
    truncated = paths['truncated.jpg']
    assert out.count('skipped unreadable image') == 3
    assert f'skipped unreadable image {truncated} (UnreadableImageError: truncated JPEG' in out
    assert f'{paths["garbage.jpg"]} (UnreadableImageError: the cv2 decoder cannot read it' in out
    assert f'{paths["empty.jpg"]} (UnreadableImageError: empty file (0 bytes))' in out
    assert '1 unreadable file(s) so far' in out and '3 unreadable file(s) so far' in out
    with pytest.raises(ValueError, match='on_error'):
        CheckedLoadImageFromFile(on_error='ignore')


def fd_run_with_truncated_image(tmp_path, on_error: str) -> Runner:
    cfg = shrink(Config.fromfile(FD_CONFIG), tmp_path)
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[0].type == 'fdclip_mm.DecodeRandomResizedCrop'  # the shipped configs' loader (a checked one)
    pipeline[0].on_error = on_error
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    bad = tmp_path / 'images' / 'train' / 'img_001.jpg'
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    return Runner.from_cfg(cfg)


@pytest.mark.slow
def test_fd_run_stops_naming_the_truncated_image(tmp_path):
    runner = fd_run_with_truncated_image(tmp_path, 'raise')
    with pytest.raises(UnreadableImageError, match=r'cannot load image \S*img_001.jpg: .*truncated JPEG'):
        runner.train()


@pytest.mark.slow
def test_fd_run_skips_the_truncated_image_and_completes_the_epoch(tmp_path):
    runner = fd_run_with_truncated_image(tmp_path, 'skip')
    runner.train()
    assert runner.epoch == 1 and runner.iter == 2  # 4 images, batch 2: the epoch kept its 2 steps
    log = open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]).read()
    assert 'WARNING - skipped unreadable image' in log and 'img_001.jpg' in log
    assert '1 unreadable file(s) so far in this data-loading process' in log
