# Runtime shared by fdclip_mm configs: mmpretrain's, plus our package and scope.
_base_ = 'mmpretrain::_base_/default_runtime.py'

custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='fdclip_mm.AtomicCheckpointHook', interval=1, max_keep_ckpts=3, save_last=True),
    rng_state=dict(type='fdclip_mm.RNGStateHook'),
    loader_report=dict(type='fdclip_mm.LoaderReportHook'),
)
log_processor = dict(window_size=100)
