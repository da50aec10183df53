"""Shared fixtures: tiny checkpoints in the published key layouts, and tiny image folders.

Helpers that are not fixtures live in ``tests/helpers/``.
"""
import os
import os.path as osp

import pytest
import torch

from .helpers.checkpoints import clip_visual_state_dict, tiny_vit_arch
from .helpers.images import write_image_folder

# 'auto' precision resolves to float32 in every test (and in the tools the tests start), on every CPU: the
# numbers compared are the same everywhere and no test runs emulated bf16. Precision tests set it themselves.
os.environ['FDCLIP_CPU_BF16'] = '0'

# pytest-xdist (`make test`, `-n N`): each worker takes its share of the cores, so that N workers do not run N times
# as many threads as there are cores
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _WORKERS > 1:
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // _WORKERS))


def pytest_collection_modifyitems(items) -> None:
    """``slow`` tests first, in their collected order: pytest-xdist hands out work in collection order, so the long
    runs start early and the quick tests fill the workers around them (a long run collected last would end the
    suite alone on one worker)."""
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture
def tiny_clip_checkpoint(tmp_path):
    """A CLIP ViT (width 32, 2 layers, patch 8, 32 px) saved as a plain state dict; returns its path."""
    path = osp.join(tmp_path, 'tiny_clip.pth')
    torch.save(clip_visual_state_dict(), path)
    return path


@pytest.fixture
def tiny_clip_teacher(tiny_clip_checkpoint):
    """The ``BackboneTeacher`` config of :func:`tiny_clip_checkpoint` (OpenAI CLIP form, 2 heads)."""
    from fdclip_mm.models.teachers import teacher_config
    return teacher_config('clip', tiny_clip_checkpoint, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32)


@pytest.fixture
def image_folder(tmp_path):
    """``train/`` with 8 and ``val/`` with 4 random images, in ``tmp_path/images``."""
    root = osp.join(tmp_path, 'images')
    write_image_folder(osp.join(root, 'train'), 8, seed=0)
    write_image_folder(osp.join(root, 'val'), 4, seed=1)
    return root


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and much faster than two on a shared, loaded CPU
    (``pytestmark = pytest.mark.usefixtures('one_thread')``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
