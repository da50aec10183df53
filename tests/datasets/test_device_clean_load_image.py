"""The checked image loader's output goes where a GPU run needs it: host tensors from the data-loading
processes (which must not touch CUDA, and whose batches ``pin_memory`` pins), then the model's device.

Our distillation pipeline (checked loader, resize, ``PackInputs``) on real files, collated as mmengine's data
loader does, through a training step of a distiller on the meta device (``tests/device_clean.py``).
"""
import mmcv
import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.dataset import pseudo_collate

from fdclip_mm.datasets import CheckedLoadImageFromFile
from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.registry import TRANSFORMS
from ..device_clean import META, meta_train_step
from ..helpers.checkpoints import tiny_vit_arch

PIPELINE = [
    dict(type='fdclip_mm.CheckedLoadImageFromFile'),
    dict(type='mmpretrain.Resize', scale=(32, 32), backend='pillow'),
    dict(type='mmpretrain.PackInputs')
]


def write_images(folder) -> list:
    rng = np.random.default_rng(0)
    paths = [str(folder / f'img_{i}.jpg') for i in range(2)]
    for path in paths:
        mmcv.imwrite(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), path)
    return paths


def test_loaded_batches_are_host_tensors_that_the_step_moves_to_the_device(tmp_path, tiny_clip_teacher):
    paths = write_images(tmp_path)
    pipeline = Compose([TRANSFORMS.build(t) for t in PIPELINE])
    loaded = pipeline.transforms[0](dict(img_path=paths[0]))
    assert isinstance(pipeline.transforms[0], CheckedLoadImageFromFile)
    assert isinstance(loaded['img'], np.ndarray) and not any(isinstance(v, torch.Tensor) for v in loaded.values())
    data = pseudo_collate([pipeline(dict(img_path=path)) for path in paths])
    assert all(img.device.type == 'cpu' and img.dtype == torch.uint8 and img.shape == (3, 32, 32)
               for img in data['inputs'])
    student = dict(type='FDViT', arch=tiny_vit_arch(32, 2, 2), img_size=32, patch_size=8)
    result = meta_train_step(FeatureDistiller(student=student, teacher=tiny_clip_teacher, mask_ratio=0.5), data)
    assert result['log_vars']['loss'].device == META
    assert [s.img_path for s in data['data_samples']] == paths
