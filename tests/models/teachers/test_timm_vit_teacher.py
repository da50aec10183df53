"""MAE / DINO / DeiT teachers against timm's VisionTransformer on equal random weights."""
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from fdclip_mm.models.teachers import DeiTTeacher, DINOTeacher, MAETeacher, TimmViTTeacher


def timm_vit(img_size=32, patch=8, width=32, depth=2, heads=2, seed=0):
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=img_size, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads,
                              num_classes=10, global_pool='token')
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == width else 0.0))
    return model.eval()


def save(tmp_path, obj, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


@pytest.mark.parametrize('teacher_cls, wrap', [
    (MAETeacher, lambda sd: {'model': {**sd, 'decoder_embed.weight': torch.zeros(3), 'mask_token': torch.zeros(1)}}),
    (DINOTeacher, lambda sd: {'teacher': {'backbone.' + k: v for k, v in sd.items()}}),
    (DeiTTeacher, lambda sd: {'model': sd}),
])
def test_tokens_equal_timm_forward_features(tmp_path, teacher_cls, wrap):
    reference = timm_vit()
    teacher = teacher_cls(checkpoint=save(tmp_path, wrap(reference.state_dict())), img_size=32, num_heads=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_features(x)
    actual = teacher(x)
    assert actual.shape == (2, 17, 32)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    assert all(not p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training


def test_explicit_attention_path_and_resized_positions(tmp_path):
    reference = timm_vit()
    path = save(tmp_path, reference.state_dict())
    teacher = TimmViTTeacher(checkpoint=path, img_size=32, num_heads=2)
    maps = teacher.forward_attention(torch.randn(1, 3, 32, 32))
    assert len(maps) == 2 and maps[0].shape == (1, 2, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(1, 2, 17))
    big = TimmViTTeacher(checkpoint=path, img_size=64, num_heads=2)
    assert big(torch.randn(1, 3, 64, 64)).shape == (1, 65, 32)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        TimmViTTeacher(checkpoint=str(tmp_path / 'none.pth'))
    bad = save(tmp_path, {'model': {'visual.conv1.weight': torch.zeros(1)}})
    with pytest.raises(KeyError, match='missing keys'):
        TimmViTTeacher(checkpoint=bad)
    sd = timm_vit().state_dict()
    sd['dist_token'] = torch.zeros(1, 1, 32)
    with pytest.raises(KeyError, match='dist_token'):
        DeiTTeacher(checkpoint=save(tmp_path, sd), img_size=32, num_heads=2)
    teacher = TimmViTTeacher(checkpoint=save(tmp_path, timm_vit().state_dict(), 'ok.pth'), img_size=32, num_heads=2)
    with pytest.raises(ValueError, match='built for'):
        teacher(torch.randn(1, 3, 48, 48))
