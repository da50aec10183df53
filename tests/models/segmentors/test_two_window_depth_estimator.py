"""TwoWindowDepthEstimator: the two-window (+ flip) test averages windows by value; other modes still run."""
import pytest
import torch
from mmengine.registry import DefaultScope, init_default_scope

from fdclip_mm.models import TwoWindowDepthEstimator
from fdclip_mm.models.segmentors import window_starts
from fdclip_mm.registry import MODELS
from ...helpers.checkpoints import tiny_vit_arch

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = tiny_vit_arch(32, 2, 2, mlp_ratio=2)


def estimator_cfg(test_cfg: dict) -> dict:
    return dict(
        type='fdclip_mm.TwoWindowDepthEstimator',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.] * 3, std=[1.] * 3),
        backbone=dict(
            type='fdclip_mm.FDViT',
            arch=TINY,
            img_size=32,
            patch_size=16,
            pos_embed='rpb',
            out_type='featmap',
            out_indices=(1, ),
            final_norm=True),
        decode_head=dict(
            type='fdclip_mm.GLPDepthHead',
            in_channels=[32],
            in_index=0,
            feature_stride=16,
            channels=8,
            loss_decode=dict(type='SiLogLoss')),
        test_cfg=test_cfg)


def build(test_cfg: dict) -> TwoWindowDepthEstimator:
    return MODELS.build(estimator_cfg(test_cfg)).eval()


def x_ramp(batch: int, height: int, width: int) -> torch.Tensor:
    """Images whose channel 0 is the column index plus 1000 x the image index."""
    x = torch.arange(width, dtype=torch.float32).expand(batch, height, width)
    x = x + 1000 * torch.arange(batch, dtype=torch.float32)[:, None, None]
    return torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], dim=1)


class WindowStub:
    """Replaces ``encode_decode``: depth = channel 0 (the column) + channel 0 at the window's top-left."""

    def __init__(self):
        self.shapes = []

    def __call__(self, crops, metas):
        assert len(metas) == crops.shape[0]
        assert all(tuple(m['img_shape']) == tuple(crops.shape[2:]) for m in metas)
        self.shapes.append(tuple(crops.shape))
        return crops[:, :1] + crops[:, :1, :1, :1]


def test_window_starts():
    assert window_starts(640, 480) == [0, 160]
    assert window_starts(480, 480) == [0]
    assert window_starts(300, 480) == [0]
    with pytest.raises(ValueError, match='two windows of 480 pixels cannot cover an image side of 1000'):
        window_starts(1000, 480)


def test_two_windows_average_by_value():
    """A 64 x 48 image and 48 x 48 windows at x = 0 and x = 16 (a 640 x 480 NYU frame at 1/10 scale)."""
    model = build(dict(mode='two_window', crop_size=(48, 48)))
    model.encode_decode = stub = WindowStub()
    inputs = x_ramp(2, 48, 64)
    depth = model.inference(inputs, [dict(ori_shape=(48, 64))] * 2)
    assert stub.shapes == [(4, 3, 48, 48)]  # both windows of both images in one pass
    assert depth.shape == (2, 1, 48, 64)
    col = torch.arange(64, dtype=torch.float32)
    for b in range(2):
        x = col + 1000 * b
        left, right = 1000 * b, 16 + 1000 * b  # channel 0 at each window's first column
        expected = torch.where(col < 16, x + left, torch.where(col < 48, x + (left + right) / 2, x + right))
        torch.testing.assert_close(depth[b, 0], expected.expand(48, 64), rtol=0, atol=1e-4)


def test_flip_is_undone_before_averaging():
    model = build(dict(mode='two_window', crop_size=(48, 48), flip=True))
    model.encode_decode = stub = WindowStub()
    depth = model.inference(x_ramp(1, 48, 64), [dict(ori_shape=(48, 64))])
    assert stub.shapes == [(4, 3, 48, 48)]  # 2 windows + their flips
    col = torch.arange(64, dtype=torch.float32)
    # a flipped window's top-left pixel is its last column: offsets 47 and 63, each averaged with 0 / 16
    left, right = (0 + 47) / 2, (16 + 63) / 2
    expected = torch.where(col < 16, col + left, torch.where(col < 48, col + (left + right) / 2, col + right))
    torch.testing.assert_close(depth[0, 0], expected.expand(48, 64), rtol=0, atol=1e-4)


@pytest.mark.parametrize('shape', [(48, 48), (32, 40)])
def test_square_or_small_image_is_one_window(shape):
    model = build(dict(mode='two_window', crop_size=(48, 48)))
    model.encode_decode = stub = WindowStub()
    inputs = x_ramp(1, *shape)
    depth = model.inference(inputs, [dict(ori_shape=shape)])
    assert stub.shapes == [(1, 3, *shape)]
    torch.testing.assert_close(depth, inputs[:, :1])  # the window's offset is 0


def test_taller_image_gets_four_windows():
    model = build(dict(mode='two_window', crop_size=(32, 32)))
    model.encode_decode = stub = WindowStub()
    inputs = torch.zeros(1, 3, 40, 48)
    inputs[:, 0] = torch.arange(40 * 48, dtype=torch.float32).reshape(40, 48)
    depth = model.inference(inputs, [dict(ori_shape=(40, 48))])
    assert stub.shapes == [(4, 3, 32, 32)]
    total, count = torch.zeros(40, 48), torch.zeros(40, 48)
    for y in (0, 8):
        for x in (0, 16):
            total[y:y + 32, x:x + 32] += inputs[0, 0, y:y + 32, x:x + 32] + inputs[0, 0, y, x]
            count[y:y + 32, x:x + 32] += 1
    torch.testing.assert_close(depth[0, 0], total / count)


def test_real_model_two_windows_equal_the_average_of_its_window_predictions():
    torch.manual_seed(0)
    model = build(dict(mode='two_window', crop_size=(32, 32)))
    inputs = torch.randn(1, 3, 32, 48)
    out = model.predict(inputs)[0].pred_depth_map.data
    with torch.no_grad():
        left = model.encode_decode(inputs[..., :32], [dict(img_shape=torch.Size((32, 32)))])
        right = model.encode_decode(inputs[..., 16:], [dict(img_shape=torch.Size((32, 32)))])
    expected = torch.cat([left[..., :16], (left[..., 16:] + right[..., :16]) / 2, right[..., 16:]], dim=-1)
    torch.testing.assert_close(out, expected[0])
    assert (out > 0).all() and (out < 10).all()


def test_slide_mode_slides_and_whole_mode_runs_once():
    model = build(dict(mode='slide', crop_size=(32, 32), stride=(16, 16)))
    model.encode_decode = stub = WindowStub()
    model.inference(x_ramp(1, 32, 64), [dict(ori_shape=(32, 64), img_shape=(32, 64))])
    assert stub.shapes == [(1, 3, 32, 32)] * 3  # mmseg 1.2.2's DepthEstimator would run 'whole' here
    model = build(dict(mode='whole'))
    model.encode_decode = stub = WindowStub()
    model.inference(x_ramp(1, 32, 64), [dict(ori_shape=(32, 64), img_shape=(32, 64))])
    assert stub.shapes == [(1, 3, 32, 64)]


def test_bad_test_cfg_names_the_key():
    with pytest.raises(ValueError, match="test_cfg.mode must be one of .* got 'three_window'"):
        build(dict(mode='three_window', crop_size=(32, 32)))
    with pytest.raises(ValueError, match='needs test_cfg.crop_size'):
        build(dict(mode='two_window'))


def test_builds_and_trains_whatever_the_default_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        init_default_scope('mmpretrain')
        model = MODELS.build(estimator_cfg(dict(mode='two_window', crop_size=(32, 32))))
    from mmseg.models.losses import SiLogLoss
    assert isinstance(model.decode_head.loss_decode, SiLogLoss)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
    sample.gt_depth_map = PixelData(data=torch.rand(1, 32, 32) * 5 + 1)
    losses = model.loss(torch.randn(1, 3, 32, 32), [sample])
    assert set(losses) == {'decode.loss_silog'} and torch.isfinite(losses['decode.loss_silog'])
