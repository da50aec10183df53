from .attention import Attention
from .drop_path import DropPath
from .fd_vit import FDViT
from .rel_pos_bias import RelativePositionBias
from .vit_block import ViTBlock

__all__ = ['Attention', 'DropPath', 'FDViT', 'RelativePositionBias', 'ViTBlock']
