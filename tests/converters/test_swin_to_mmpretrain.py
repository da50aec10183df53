"""The EsViT / authors'-layout Swin reader, against timm's own conversion of the same file."""
import pytest
import torch

from fdclip_mm.converters.swin_to_mmpretrain import swin_to_mmpretrain_state_dict, unfold_order
from fdclip_mm.models.teachers import read_teacher_checkpoint, teacher_config
from fdclip_mm.registry import MODELS
from ..helpers.checkpoints import esvit_checkpoint

ARCH = dict(embed_dims=16, depths=[2, 2, 2], num_heads=[1, 2, 4])


def test_unfold_order_matches_patch_merging_by_value():
    """The authors' concatenation (x0, x1, x2, x3 blocks) and nn.Unfold's (per channel, raster) of one 2x2 cell."""
    channels = 3
    cell = torch.arange(4 * channels, dtype=torch.float).reshape(2, 2, channels)  # (row, col, c)
    authors = torch.cat([cell[0, 0], cell[1, 0], cell[0, 1], cell[1, 1]])
    unfolded = torch.nn.functional.unfold(cell.permute(2, 0, 1)[None], kernel_size=2, stride=2)[0, :, 0]
    torch.testing.assert_close(unfold_order(authors), unfolded)


def test_esvit_checkpoint_gives_timms_swin_outputs(tmp_path):
    timm_swin = pytest.importorskip('timm.models.swin_transformer')
    path = str(tmp_path / 'checkpoint_best.pth')
    authors = esvit_checkpoint(path, ARCH, window_size=4, img_size=64)
    cfg = teacher_config('esvit_swin', path, arch=ARCH, img_size=64, window_size=4, out_indices=(2, ), dtype=None)
    teacher = MODELS.build(cfg)
    reference = timm_swin.SwinTransformer(
        img_size=64, patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4, num_classes=0)
    reference.load_state_dict(timm_swin.checkpoint_filter_fn(authors, reference), strict=True)
    reference.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_features(images).permute(0, 3, 1, 2)  # after the final norm
    features = teacher(images)
    assert features.cls_token is None and features.patches.shape == (2, 64, 4, 4)
    torch.testing.assert_close(features.patches, expected, atol=1e-5, rtol=1e-5)


def test_reader_drops_heads_and_buffers_and_prefers_the_ema_teacher(tmp_path):
    path = str(tmp_path / 'checkpoint_best.pth')
    esvit_checkpoint(path, ARCH, window_size=4, img_size=64)
    state = read_teacher_checkpoint('esvit_swin', path)
    assert not any(
        k.startswith(('head', 'module', 'backbone')) or k.endswith(('relative_position_index', 'attn_mask'))
        for k in state)
    assert 'norm2.weight' in state and 'stages.1.downsample.reduction.weight' in state
    ckpt = torch.load(path, weights_only=True)
    torch.save(dict(student=ckpt['student']), path)  # no EMA teacher: the student's backbone
    assert set(read_teacher_checkpoint('esvit_swin', path)) == set(state)


def test_unknown_tensor_is_named():
    with pytest.raises(KeyError, match="'head.fc.weight'"):
        swin_to_mmpretrain_state_dict(
            {
                'layers.0.blocks.0.norm1.weight': torch.ones(2),
                'head.fc.weight': torch.ones(2, 2)
            }, source='x.pth')
    with pytest.raises(KeyError, match='no Swin blocks'):
        swin_to_mmpretrain_state_dict({'norm.weight': torch.ones(2)}, source='x.pth')
