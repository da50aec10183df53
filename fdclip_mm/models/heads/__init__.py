from .glp_depth_head import GLPDepthHead

__all__ = ['GLPDepthHead']
