"""Dense-task training steps run whole on the meta device: the GLP depth estimator (and its two-window test) and
UperNet on ``ViTPyramidNeck``, each from its shipped config, shrunk (tiny widths, no init checkpoint), under
:class:`RefuseCPUTensors` (see ``tests/device_clean.py``).
"""
import os.path as osp
from unittest import mock

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope, init_default_scope
from mmengine.structures import PixelData

from ..device_clean import META, CPUTensorInStepError, RefuseCPUTensors, meta_train_step, trainable
from ..helpers.checkpoints import tiny_vit_arch
from ..helpers.config_lists import REPO, base_config
from ..helpers.images import uint8_images
from ..helpers.tiny_fd_configs import TINY_ARCH as TINY

pytest.importorskip('mmcv._ext', reason="mmseg's models need mmcv built with its ops")
from mmseg.structures import SegDataSample  # noqa: E402

from fdclip_mm.models.heads import GLPDepthHead  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

CLASSES = 5


def build(model_cfg: dict):
    """Builds ``model_cfg`` in mmseg's scope (the configs' ``default_scope``) on the CPU."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        init_default_scope('mmseg')
        return MODELS.build(model_cfg)


# --------------------------------------------------------------------------------------------------- depth
def tiny_depth_estimator():
    """The NYUv2 GLP model of ``configs/_base_/models/depth_glp_fdvit-b16.py``: 32 x 32 crops, 2-block FDViT."""
    model = base_config(osp.join('models', 'depth_glp_fdvit-b16.py')).model
    model.data_preprocessor.size = (32, 32)
    model.backbone.pop('init_cfg')
    model.backbone.update(arch=TINY, img_size=(32, 32), out_indices=(0, 1))
    model.decode_head.update(in_channels=[TINY['embed_dims']] * 2, in_index=1, channels=8)
    model.test_cfg.crop_size = (32, 32)
    return build(model)


def depth_samples(n: int, height: int, width: int):
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
        sample.gt_depth_map = PixelData(data=torch.rand(1, height, width, generator=gen) * 9 + 1)
        samples.append(sample)
    return samples


def test_depth_estimator_step():
    """28-px-wide crops padded to 32 by the data preprocessor; SiLog loss; BN in the decoder."""
    data = dict(inputs=uint8_images(2, 32, 28), data_samples=depth_samples(2, 32, 28))
    result = meta_train_step(tiny_depth_estimator(), data)
    assert set(result['log_vars']) == {'loss', 'decode.loss_silog'}
    assert result['stepped'] == trainable(result['model'])
    assert isinstance(result['model'].decode_head, GLPDepthHead)


def test_two_window_test_step():
    """A 32 x 48 image: two 32 x 32 windows and their flips, averaged on the device."""
    model = tiny_depth_estimator().to(META).eval()
    data = dict(inputs=uint8_images(2, 32, 48), data_samples=depth_samples(2, 32, 48))
    calls = []
    two_window = model.two_window_inference
    with RefuseCPUTensors(), mock.patch.object(
            model, 'two_window_inference', side_effect=lambda *args: calls.append(1) or two_window(*args)):
        samples = model.test_step(data)
    assert calls and [s.pred_depth_map.data.shape for s in samples] == [(1, 32, 48)] * 2
    assert all(s.pred_depth_map.data.device == META for s in samples)


def test_glp_head_with_a_cpu_tensor_fails_the_step(monkeypatch):
    """The check bites in the decoder too: a depth scale made on the CPU."""
    forward = GLPDepthHead.forward
    monkeypatch.setattr(GLPDepthHead, 'forward', lambda self, x: forward(self, x) * torch.ones(1, 1, 1, 32))
    data = dict(inputs=uint8_images(2, 32, 32), data_samples=depth_samples(2, 32, 32))
    with pytest.raises(CPUTensorInStepError):
        meta_train_step(tiny_depth_estimator(), data)


# ------------------------------------------------------------------------------------------------- UperNet
def tiny_upernet():
    """The ADE20K UperNet of ``configs/upernet_ade20k/`` (ViTPyramidNeck, UPerHead, auxiliary FCN) at 32 px."""
    model = Config.fromfile(
        osp.join(REPO, 'configs', 'upernet_ade20k', 'upernet_fd-clip-vit-b16_8xb2-160k_ade20k-512x512.py')).model
    width, bn = 32, dict(type='BN', requires_grad=True)  # SyncBN needs a process group
    model.data_preprocessor.size = (32, 32)
    model.backbone.pop('init_cfg')
    model.backbone.update(arch=tiny_vit_arch(width, 4, 2, mlp_ratio=2), img_size=32, out_indices=(0, 1, 2, 3))
    model.neck.update(embed_dims=width, norm_cfg=bn)
    model.decode_head.update(in_channels=[width] * 4, channels=16, num_classes=CLASSES, norm_cfg=bn)
    model.auxiliary_head.update(in_channels=width, channels=16, num_classes=CLASSES, norm_cfg=bn)
    return build(model)


def test_upernet_on_the_pyramid_neck_step():
    samples = []
    for i in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
        sample.gt_sem_seg = PixelData(data=torch.full((1, 32, 32), i, dtype=torch.long))
        samples.append(sample)
    result = meta_train_step(tiny_upernet(), dict(inputs=uint8_images(2, 32, 32), data_samples=samples))
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(result['log_vars'])
    assert result['stepped'] == trainable(result['model'])
    assert any(name.startswith('neck.branches.0.') for name in result['stepped'])
