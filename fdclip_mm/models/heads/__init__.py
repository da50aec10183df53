from importlib.util import find_spec

__all__ = []
# mmseg's models load mmcv's compiled ops: with an mmcv built without them ("lite", FDCLIP_MMCV_OPS=0 in
# scripts/setup_env.sh; distillation needs none) the mmseg-based depth head is not registered.
if find_spec('mmcv._ext') is not None:
    from .glp_depth_head import GLPDepthHead
    __all__ += ['GLPDepthHead']
