from .vit_pyramid_neck import ViTPyramidNeck

__all__ = ['ViTPyramidNeck']
