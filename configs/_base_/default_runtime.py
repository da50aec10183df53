# Runtime shared by fdclip_mm configs: mmpretrain's (default scope 'mmpretrain'), plus our package and hooks.
_base_ = 'mmpretrain::_base_/default_runtime.py'

custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

default_hooks = dict(
    checkpoint=dict(type='fdclip_mm.AtomicCheckpointHook', max_keep_ckpts=3, save_last=True),
    rng_state=dict(type='fdclip_mm.RNGStateHook'),
    loader_report=dict(type='fdclip_mm.LoaderReportHook'),
)
log_processor = dict(window_size=100)
