"""What the distiller calls on a student: FDViT's forward_features, the one adapter for other backbones."""
import pytest
import torch
from mmpretrain.models import SwinTransformer, VisionTransformer

from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.algorithms.student_tokens import refuse_unread_options, student_tokens
from fdclip_mm.models.backbones import FDViT

ARCH = dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32)


def test_a_student_with_the_interface_is_read_through_forward_features():
    fdvit = FDViT(arch=ARCH, img_size=32, patch_size=8).eval()
    images = torch.randn(2, 3, 32, 32)
    tokens = student_tokens(fdvit, images)
    torch.testing.assert_close(tokens.tokens, fdvit.forward_features(images))
    assert tokens.grid == (4, 4) and tokens.has_cls and tokens.ids_keep is None
    features = tokens.feature_map()
    assert features.patches.shape == (2, 16, 4, 4) and features.cls_token.shape == (2, 16)
    ids_keep = torch.tensor([[1, 2], [0, 7]])
    masked = student_tokens(fdvit, images, ids_keep)
    torch.testing.assert_close(masked.tokens, fdvit.forward_features(images, ids_keep))
    assert masked.tokens.shape == (2, 3, 16) and masked.ids_keep is ids_keep
    with pytest.raises(ValueError, match='the tokens of a masked input make no patch grid'):
        masked.feature_map()


def test_other_backbones_through_their_one_output():
    images = torch.randn(2, 3, 32, 32)
    vit = VisionTransformer(arch=ARCH, img_size=32, patch_size=8, out_type='raw')
    vit.eval()  # mmpretrain's backbones return None from train()
    tokens = student_tokens(vit, images)
    torch.testing.assert_close(tokens.tokens, vit(images)[0])
    assert tokens.grid == (4, 4) and tokens.has_cls
    swin = SwinTransformer(
        arch=dict(embed_dims=8, depths=[1, 1], num_heads=[1, 2]), img_size=32, window_size=4, out_indices=(1, ))
    swin.eval()
    tokens = student_tokens(swin, images)
    torch.testing.assert_close(tokens.tokens, swin(images)[0].flatten(2).transpose(1, 2))  # raster order
    assert tokens.grid == (4, 4) and not tokens.has_cls
    with pytest.raises(ValueError, match='SwinTransformer sees whole images only'):
        student_tokens(swin, images, torch.zeros(2, 1, dtype=torch.long))


def test_options_the_distiller_would_not_read_are_refused(tiny_clip_teacher):
    fdvit = FDViT(arch=ARCH, img_size=32, patch_size=8)
    refuse_unread_options(fdvit, dict(type='FDViT', final_norm=True))  # read by forward_features
    with pytest.raises(ValueError, match=r"\['out_type', 'out_indices'\] shape its forward only"):
        refuse_unread_options(fdvit, dict(type='FDViT', out_type='raw', out_indices=-1))
    # they choose the output of a backbone read through its forward
    refuse_unread_options(VisionTransformer(arch=ARCH, img_size=32, patch_size=8), dict(out_type='raw'))
    with pytest.raises(ValueError, match=r"the distiller reads FDViT through forward_features.*\['out_type'\]"):
        FeatureDistiller(
            student=dict(type='FDViT', arch=ARCH, img_size=32, patch_size=8, out_type='featmap'),
            teacher=tiny_clip_teacher)
