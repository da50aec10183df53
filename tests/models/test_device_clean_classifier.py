"""The fine-tuning classifiers step whole on the meta device: mmpretrain's ImageClassifier on our FDViT, on the CLIP
ViT and on the distilled Swin-V2, with Mixup / CutMix, label smoothing and the layer-decay AdamW of the configs.

Each model comes from its config under ``configs/_base_/models/``, shrunk (tiny widths, no init checkpoint), and
steps once on meta under :class:`RefuseCPUTensors` (see ``tests/device_clean.py``).
"""
import os.path as osp
from unittest import mock

import pytest
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope, init_default_scope
from mmpretrain.structures import DataSample

import fdclip_mm.engine.nonfinite_loss
from ..device_clean import META, meta_train_step, trainable
from ..helpers.checkpoints import tiny_vit_arch
from ..helpers.config_lists import base_config
from ..helpers.images import uint8_images

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = tiny_vit_arch(32, 2, 2, mlp_ratio=2)
CLASSES = 5


def tiny_classifier(config: str):
    """The ImageClassifier of ``configs/_base_/models/<config>`` on 32-px images, 5 classes."""
    model = base_config(osp.join('models', config)).model
    backbone = model.backbone
    backbone.pop('init_cfg', None)
    if 'SwinTransformerV2' in backbone.type:  # 32 px: stages of 8, 4, 2, 1 tokens
        backbone.update(
            arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], extra_norm_every_n_blocks=0),
            img_size=32,
            window_size=[2, 2, 2, 1])
        model.head.in_channels = 128
    else:
        backbone.update(arch=TINY, img_size=32)
        model.head.in_channels = TINY['embed_dims']
    model.head.num_classes = model.data_preprocessor.num_classes = CLASSES
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        return MODELS.build(model)


def layer_decay_optim_wrapper(model):
    """The fine-tuning schedule's optimizer (layer decay, the non-finite loss policy) built on ``model``.

    Without AMP (autocast has no meta device) and gradient clipping (it logs the norm with ``float()``, which
    needs the data: that norm never leaves the GPU otherwise).
    """
    cfg = base_config(osp.join('schedules', 'finetune_adamw_layer_decay.py')).optim_wrapper
    cfg.type = 'fdclip_mm.CheckedOptimWrapper'
    for key in ('loss_scale', 'clip_grad'):
        cfg.pop(key)
    cfg.optimizer.foreach = True  # torch's choice on a GPU
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        return build_optim_wrapper(model, cfg)


@pytest.mark.parametrize('config', ['fdvit-b16_cls.py', 'clip-vit-b16_cls.py', 'swinv2-b-w14_cls.py'])
def test_finetuning_classifier_step(config):
    """Mixup / CutMix, label smoothing, layer-decay AdamW; the non-finite-loss check takes the device's loss.

    The recipes without Mixup / CutMix (EMA) differ in mmpretrain's label smoothing only, whose check of the
    integer labels (``.item()``) needs the data.
    """
    model = tiny_classifier(config)
    data = dict(inputs=uint8_images(4, 32, 32), data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    checked = []
    with mock.patch.object(fdclip_mm.engine.nonfinite_loss, 'finite_on_every_rank',
                           lambda loss: checked.append(loss.device) or True):
        result = meta_train_step(model, data, layer_decay_optim_wrapper)
    assert checked == [META]
    assert result['stepped'] == trainable(result['model'])
    assert result['model'].data_preprocessor.batch_augments is not None
