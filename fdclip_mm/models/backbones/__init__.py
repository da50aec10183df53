from .attention import Attention
from .fd_vit import FDViT
from .rel_pos_bias import RelativePositionBias
from .vit_block import ViTBlock

__all__ = ['Attention', 'FDViT', 'RelativePositionBias', 'ViTBlock']
