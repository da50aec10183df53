"""The libraries' inference APIs on our configs, one run per config family: mmpretrain's ``get_model`` (by config
and by name), ``inference_model``, ``ImageClassificationInferencer`` and ``FeatureExtractor``; mmdet's
``DetInferencer``; mmseg's ``MMSegInferencer`` (segmentation and depth); and ``tools/test.py --show-dir``.

Every config's test pipeline starts with the loader these APIs recognise (checked where each family's tests load
their configs: ``assert_inferencers_find_the_loader``)."""
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from fdclip_mm.converters.official_fd import convert_official_fd
from ..converters.official_fd_layout import official_vit_state, tiny_beit, write_official_file
from ..helpers.config_lists import REPO

pytestmark = pytest.mark.usefixtures('one_thread')

DIGITS = 'configs/demo/finetune_fdvit-t8-4l_digits.py'
FD_CLIP = 'configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'
FT_CLIP = 'configs/finetune_in1k/fd-clip-vit-b16_16xb128-100e_in1k.py'
MASK_RCNN_DEMO = 'configs/demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py'
UPERNET_DEMO = 'configs/demo/upernet_fdvit-t14-6l_labelme-ade.py'
DEPTH_DEMO = 'configs/demo/depth_fdvit-t14-6l_middlebury-nyu.py'
ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=128)


@pytest.fixture(autouse=True)
def scope_of_a_new_process():
    """Each test starts in mmpretrain's scope, as a new process would find it: a scope left current by an earlier
    test in the same worker (mmdet's and mmseg's inferencers, runners) would hide mmpretrain's transforms from its
    inferencers, which build their pipeline in whatever scope is current."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture
def photo(tmp_path) -> str:
    """A smooth 120 x 150 colour image as a JPEG file."""
    y, x = np.mgrid[0:120, 0:150]
    img = np.stack([(x * 1.7) % 256, (y * 2.1) % 256, ((x + y) * 0.8) % 256], axis=-1).astype(np.uint8)
    path = str(tmp_path / 'photo.jpg')
    mmcv.imwrite(img, path)
    return path


def saved_weights(model: torch.nn.Module, path: str, seed: int = 0) -> str:
    """``model``'s weights, randomised (a trained model's stand-in), as a checkpoint file."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_our_model_index_is_in_mmpretrains_model_hub():
    """``list_models`` lists our model-index once fdclip_mm is imported; ``get_model`` builds one by name."""
    import mmpretrain
    ours = mmpretrain.list_models('fd-*') + mmpretrain.list_models('fd_*')
    assert 'fd-clip-vit-b16_16xb128-100e_in1k' in ours and 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k' in ours
    assert 'finetune_fdvit-t8-4l_digits' in mmpretrain.list_models(task='Image Classification')
    model = mmpretrain.get_model('finetune_fdvit-t8-4l_digits')
    assert type(model.backbone).__name__ == 'FDViT' and model.head.fc.out_features == 10


def test_classifiers_by_name_and_by_config(photo, tmp_path):
    """``inference_model`` (by name: the entry's result says image classification), the inferencer on the config
    file and ``get_model`` + ``extract_feat`` agree on one image."""
    from mmpretrain import ImageClassificationInferencer, get_model, inference_model
    weights = saved_weights(get_model(osp.join(REPO, DIGITS)), str(tmp_path / 'digits.pth'))
    by_name = inference_model('finetune_fdvit-t8-4l_digits', photo, pretrained=weights)
    by_config = ImageClassificationInferencer(osp.join(REPO, DIGITS), pretrained=weights)(photo)[0]
    assert by_name['pred_label'] == by_config['pred_label'] and 0 <= by_name['pred_label'] < 10
    np.testing.assert_allclose(by_name['pred_scores'], by_config['pred_scores'], rtol=1e-5, atol=1e-6)
    assert by_name['pred_scores'].sum() == pytest.approx(1.0, abs=1e-5)
    model = get_model(osp.join(REPO, DIGITS), pretrained=weights)
    pooled = model.extract_feat(torch.randn(1, 3, 32, 32))
    assert pooled[0].shape == (1, 64)


def test_released_fine_tuned_model_through_the_inferencer(photo, tmp_path):
    """A released-layout fine-tuned ViT, converted, scored by ImageClassificationInferencer with our fine-tuning
    config (tiny widths): the official model's probabilities on the config's test view of the image."""
    from mmpretrain import ImageClassificationInferencer
    official = tiny_beit(img_size=224, patch=16, distilled=False, num_classes=5)
    src, dst = str(tmp_path / 'released.pth'), str(tmp_path / 'cls.pth')
    write_official_file(src, official_vit_state(official))
    convert_official_fd(src, dst)
    cfg = Config.fromfile(osp.join(REPO, FT_CLIP))
    cfg.model.backbone.update(arch=ARCH, init_cfg=None)
    cfg.model.head.update(num_classes=5, in_channels=32)
    cfg.model.data_preprocessor.num_classes = 5
    inferencer = ImageClassificationInferencer(cfg, pretrained=dst)
    result = inferencer(photo)[0]
    data = next(inferencer.preprocess([photo]))
    with torch.no_grad():
        x = inferencer.model.data_preprocessor(data, False)['inputs']
        expected = official(x).softmax(-1)[0]
    np.testing.assert_allclose(result['pred_scores'], expected.numpy(), rtol=1e-4, atol=1e-6)


def test_feature_extractor_on_a_distillation_config(photo, tmp_path, tiny_clip_teacher):
    """mmpretrain's FeatureExtractor on our FD-CLIP config (tiny widths): the student's tokens after its final
    norm, as the distiller computes them."""
    from mmpretrain import FeatureExtractor, get_model
    cfg = Config.fromfile(osp.join(REPO, FD_CLIP))
    cfg.model.student.arch = ARCH
    cfg.model.teacher = tiny_clip_teacher
    weights = saved_weights(get_model(cfg), str(tmp_path / 'fd.pth'))
    extractor = FeatureExtractor(cfg, pretrained=weights)
    (tokens, ) = extractor(photo)[0]
    assert tokens.shape == (1 + 14 * 14, 32)
    data = next(extractor.preprocess([photo]))
    with torch.no_grad():
        images = extractor.model.data_preprocessor(data, False)['inputs']['student']
        torch.testing.assert_close(tokens, extractor.model.student.forward_features(images)[0])


def dense_weights(config: str, scope: str, tmp_path) -> str:
    from mmengine.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, config))
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    return saved_weights(model, str(tmp_path / f'{scope}.pth'))


def test_det_inferencer_on_the_mask_rcnn_demo(photo, tmp_path):
    """mmdet's DetInferencer (what its demo/image_demo.py runs) predicts and draws with our Mask R-CNN config."""
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(
        osp.join(REPO, MASK_RCNN_DEMO), weights=dense_weights(MASK_RCNN_DEMO, 'mmdet', tmp_path), device='cpu')
    out_dir = str(tmp_path / 'det')
    result = inferencer(photo, out_dir=out_dir, pred_score_thr=0.0, no_save_pred=False)
    prediction = result['predictions'][0]
    assert {'labels', 'scores', 'bboxes'} <= set(prediction)
    assert os.listdir(osp.join(out_dir, 'vis'))


@pytest.mark.parametrize('config', [UPERNET_DEMO, DEPTH_DEMO])
def test_mmseg_inferencer_on_the_segmentation_and_depth_demos(config, photo, tmp_path):
    """mmseg's MMSegInferencer predicts and draws with our UperNet and depth configs."""
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(osp.join(REPO, config), weights=dense_weights(config, 'mmseg', tmp_path), device='cpu')
    out_dir = str(tmp_path / 'seg')
    prediction = inferencer(photo, out_dir=out_dir)['predictions']
    assert prediction.shape[-2:] == (120, 150)
    assert os.listdir(osp.join(out_dir, 'vis'))


def load_test_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('fdclip_test_tool', osp.join(REPO, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('config,key,value', [(DIGITS, 'out_dir', 'vis'), (MASK_RCNN_DEMO, 'test_out_dir', 'vis'),
                                              (UPERNET_DEMO, None, 'vis')])
def test_show_dir_turns_on_each_librarys_visualisation_hook(config, key, value):
    cfg = Config.fromfile(osp.join(REPO, config))
    load_test_tool().enable_visualization(cfg, 'vis', False, 2)
    hook = cfg.default_hooks.visualization
    assert hook.get('enable', hook.get('draw')) is True
    assert (hook[key] if key else cfg.visualizer.save_dir) == value


def test_show_dir_is_refused_for_a_distiller():
    cfg = Config.fromfile(osp.join(REPO, FD_CLIP))
    with pytest.raises(ValueError, match='FeatureDistiller predicts a feature error per image, nothing to draw'):
        load_test_tool().enable_visualization(cfg, 'vis', False, 2)


@pytest.mark.slow
def test_test_tool_draws_predictions_with_show_dir(tmp_path):
    """``tools/test.py CONFIG CKPT --show-dir DIR`` evaluates and draws every test image (mmpretrain's hook)."""
    from mmpretrain import get_model
    root = tmp_path / 'digits'
    for label in range(10):
        os.makedirs(root / 'val' / str(label))
        mmcv.imwrite(np.full((8, 8, 3), 25 * label, np.uint8), str(root / 'val' / str(label) / f'digit_{label}.png'))
    weights = saved_weights(get_model(osp.join(REPO, DIGITS)), str(tmp_path / 'digits.pth'))
    show_dir = str(tmp_path / 'drawn')
    run = subprocess.run([
        sys.executable, 'tools/test.py', DIGITS, weights, '--work-dir',
        str(tmp_path / 'work'), '--show-dir', show_dir, '--cfg-options', f'data_root={root}',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'
    ],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'accuracy/top1' in run.stdout + run.stderr
    assert len(os.listdir(show_dir)) == 10
