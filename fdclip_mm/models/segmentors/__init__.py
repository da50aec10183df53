from importlib.util import find_spec

__all__ = []
# mmseg's models load mmcv's compiled ops: with an mmcv built without them ("lite", FDCLIP_MMCV_OPS=0 in
# scripts/setup_env.sh; distillation needs none) the mmseg-based depth estimator is not registered.
if find_spec('mmcv._ext') is not None:
    from .two_window_depth_estimator import TwoWindowDepthEstimator, window_starts
    __all__ += ['TwoWindowDepthEstimator', 'window_starts']
