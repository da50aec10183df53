# COCO fine-tuning schedule of the supplement (appendix H): batch 16 (8 GPUs x 2 images), AdamW, lr 2e-4,
# layer-wise lr decay 0.75, 12 epochs with lr x0.1 at epochs 9 and 11. Weight decay 0.05 and the
# 1000-iteration linear warm-up follow mmdet's transformer (Swin) Mask R-CNN recipes.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

max_epochs = 12

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9, 11], gamma=0.1),
]

optim_wrapper = dict(
    type='fdclip_mm.CheckedOptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.75),
)
