from .two_window_depth_estimator import TwoWindowDepthEstimator, window_starts

__all__ = ['TwoWindowDepthEstimator', 'window_starts']
