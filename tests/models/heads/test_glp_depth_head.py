"""GLPDepthHead: output geometry, depth range, SiLog loss by value and its training behaviour."""
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from fdclip_mm.models import GLPDepthHead

pytestmark = pytest.mark.usefixtures('one_thread')


def samples_with_depth(depth: torch.Tensor):
    """Data samples carrying (B, 1, H, W) ground-truth depth, as mmseg's PackSegInputs writes them."""
    out = []
    for d in depth:
        sample = SegDataSample()
        sample.gt_depth_map = PixelData(data=d)
        out.append(sample)
    return out


@pytest.mark.parametrize('stride,grid', [(16, (3, 5)), (14, (2, 3)), (32, (2, 2))])
def test_output_covers_the_input_of_the_selected_map(stride, grid):
    head = GLPDepthHead(in_channels=[8, 16], in_index=1, feature_stride=stride, channels=12)
    feats = [torch.randn(2, 8, 7, 7), torch.randn(2, 16, *grid)]
    out = head(feats)
    assert out.shape == (2, 1, grid[0] * stride, grid[1] * stride)
    deconvs = [m for m in head.deconv_layers if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in deconvs] == [32, 32, 32]
    single = GLPDepthHead(in_channels=16, feature_stride=stride, channels=12)
    assert single(feats[1]).shape == out.shape


def test_depth_is_sigmoid_of_the_prediction_times_max_depth():
    torch.manual_seed(0)
    head = GLPDepthHead(in_channels=16, feature_stride=16, channels=8, max_depth=10.0).eval()
    head.init_weights()
    x = torch.randn(2, 16, 3, 4)
    out = head(x)
    # the original's N(0, 0.001) init: every pixel starts at ~ max_depth / 2
    torch.testing.assert_close(out, torch.full_like(out, 5.0), atol=1e-3, rtol=0)
    for m in head.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, std=0.1)
    torch.nn.init.normal_(head.depth_pred[2].weight, std=2.0)  # spread the logits over the sigmoid's range
    out = head(x)
    logits = head.depth_pred(
        torch.nn.functional.interpolate(
            head.conv_layers(head.deconv_layers(x)), size=(48, 64), mode='bilinear', align_corners=False))
    torch.testing.assert_close(out, torch.sigmoid(logits) * 10.0)
    assert out.min() > 0 and out.max() < 10.0 and out.std() > 0.2


def test_silog_loss_by_value_ignores_invalid_pixels():
    torch.manual_seed(0)
    head = GLPDepthHead(in_channels=16, feature_stride=16, channels=8)
    x = torch.randn(2, 16, 2, 2)
    gt = torch.rand(2, 1, 32, 32) * 8 + 1
    gt[:, :, :4] = 0  # no depth measured there
    loss = head.loss(x, samples_with_depth(gt), train_cfg=None)['loss_silog']
    pred = head(x)
    expected = []
    for p, g in zip(pred, gt):
        d = torch.log(g[g > 0]) - torch.log(p[g > 0])
        expected.append(torch.sqrt((d**2).mean() - 0.5 * d.mean()**2))
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    head = GLPDepthHead(in_channels=16, feature_stride=16, channels=8)
    head.init_weights()
    x = torch.randn(2, 16, 2, 2)
    ramp = torch.linspace(1, 9, 32)
    gt = (ramp[None, :] + 0 * ramp[:, None]).expand(2, 1, 32, 32).clone()
    gt[1] = gt[1].flip(-1)
    samples = samples_with_depth(gt)
    optim = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = head.loss(x, samples, train_cfg=None)['loss_silog']
        assert torch.isfinite(loss)
        losses.append(loss.item())
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert losses[-1] < 0.5 * losses[0], losses


def test_predict_resizes_to_the_image_shape():
    head = GLPDepthHead(in_channels=16, feature_stride=16, channels=8).eval()
    metas = [dict(img_shape=(30, 50), pad_shape=(32, 48))]
    out = head.predict([torch.randn(1, 16, 2, 3)], metas, test_cfg=None)
    assert out.shape == (1, 1, 32, 48)


def test_bad_configs_and_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r'num_filters \(32, 32\).*num_deconv=3'):
        GLPDepthHead(in_channels=16, feature_stride=16, num_filters=(32, 32))
    with pytest.raises(ValueError, match='feature_stride 4'):
        GLPDepthHead(in_channels=16, feature_stride=4)
    with pytest.raises(ValueError, match='in_index 2'):
        GLPDepthHead(in_channels=[16, 16], in_index=2, feature_stride=16)
    head = GLPDepthHead(in_channels=[8, 16], feature_stride=16)
    with pytest.raises(ValueError, match=r'\(B, 16, h, w\).*got \(1, 8, 2, 2\)'):
        head([torch.randn(1, 8, 2, 2), torch.randn(1, 8, 2, 2)])
    with pytest.raises(ValueError, match='got 1 feature maps'):
        head([torch.randn(1, 16, 2, 2)])
