"""DINOv2 weights: the head count the weights do not record follows DINOv2's design, as mmpretrain's archs."""
import pytest
from mmpretrain.models import VisionTransformer

from fdclip_mm.converters.dinov2_weights import DINOv2Arch, load_dinov2_checkpoint


@pytest.mark.parametrize('name', [name for name in VisionTransformer.arch_zoo if name.startswith('dinov2')])
def test_num_heads_match_mmpretrains_dinov2_archs(name):
    zoo = VisionTransformer.arch_zoo[name]
    arch = DINOv2Arch(zoo['embed_dims'], zoo['num_layers'], zoo['feedforward_channels'], 14, 3, 37)
    assert arch.num_heads == zoo['num_heads']


def test_an_onnx_file_is_sent_to_the_converter(tmp_path):
    path = tmp_path / 'vit_s_focus.onnx'
    path.write_bytes(b'\x08\x07')
    with pytest.raises(
            ValueError,
            match=r'vit_s_focus.onnx is an ONNX export: convert it once with python '
            r'tools/model_converters/dinov2_onnx_to_pth.py'):
        load_dinov2_checkpoint(str(path))
