# mmseg's BEiT-B ADE20K schedule for a total batch of 16 (8 GPUs x 2 images): AdamW lr 3e-5, betas
# (0.9, 0.999), weight decay 0.05 (none on norms, biases, layer scales, class token, position embeddings and
# RPB tables), layer-wise lr decay 0.9, 1,500 linear warm-up iterations from 1e-6 x lr, then poly (power 1)
# to 0 at 160k iterations.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'

optim_wrapper = dict(
    _delete_=True,
    type='fdclip_mm.CheckedOptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
auto_scale_lr = dict(base_batch_size=16, enable=False)
