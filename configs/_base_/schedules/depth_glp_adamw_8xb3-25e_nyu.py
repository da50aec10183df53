# NYUv2 fine-tuning recipe of FD's appendix H, which follows "Revealing the Dark Secrets of MIM" (Xie et al.
# 2022), whose depth code (SwinTransformer/MIM-Depth-Estimation: README.md, train.py, configs/*_options.py,
# built on GLPDepth) trains for 25 epochs at batch 24 on the 24,231-frame train list, AdamW lr 5e-4 -> 3e-5,
# weight decay 0.05, layer decay 0.9 (its Swin-B value), fp32, no gradient clipping, 480 x 480 random crops.
# Data: mmseg's NYU base (NYUDataset in data/nyu as tools/dataset_converters/nyu.py lays it out; depth PNGs in
# mm; DepthMetric with the Eigen crop, 1e-3 < d < 10 m), whose train pipeline is already that augmentation:
# vertical CutDepth (RandomDepthMix, p 0.25), flip, 480 x 480 crop, then albumentations' RandomBrightnessContrast,
# RandomGamma and HueSaturationValue (each p 0.5, default limits). Albumentations would pull numpy 2 and OpenCV 5
# into this stack, so the photometric part uses mmseg's transforms with the same magnitudes.
_base_ = ['mmseg::_base_/datasets/nyu.py', 'mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)
default_scope = 'mmseg'

crop_size = (480, 480)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='RandomDepthMix', prob=0.25),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    # brightness +-0.2 x 255, contrast x(0.8, 1.2), saturation ~ +-30/255, hue +-20 (OpenCV units), each p 0.5
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=51,
        contrast_range=(0.8, 1.2),
        saturation_range=(0.8, 1.2),
        hue_delta=20),
    # gamma in (0.8, 1.2) with p 0.5 on the image range (written for 3-D scans, but shape-agnostic)
    dict(type='BioMedicalRandomGamma', prob=0.5, gamma_range=(0.8, 1.2)),
    dict(
        type='PackSegInputs',
        meta_keys=('img_path', 'depth_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                   'flip_direction', 'category_id')),
]
train_dataloader = dict(batch_size=3, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=2)
test_dataloader = val_dataloader

# 25 epochs of 24,231 frames at a total batch of 24 (8 GPUs x 3) = 25 x 1,009 iterations.
iters_per_epoch = 1009
max_iters = 25 * iters_per_epoch
base_lr = 5e-4
min_lr = 3e-5
layer_decay_rate = 0.9

optim_wrapper = dict(
    type='fdclip_mm.CheckedOptimWrapper',
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))

# The original ramps the lr from min_lr up to base_lr over the first half and back down over the second, each
# ramp as a power-0.9 curve; linear ramps stay within 4% of the lr range from it. Factors apply to each group's
# layer-decayed lr, as the original scales its scheduled lr by lr_scale.
param_scheduler = [
    dict(type='LinearLR', start_factor=min_lr / base_lr, end_factor=1.0, by_epoch=False, begin=0, end=max_iters // 2),
    dict(
        type='LinearLR',
        start_factor=1.0,
        end_factor=min_lr / base_lr,
        by_epoch=False,
        begin=max_iters // 2,
        end=max_iters),
]

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=iters_per_epoch)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='fdclip_mm.AtomicCheckpointHook',
        by_epoch=False,
        interval=iters_per_epoch,
        max_keep_ckpts=1,
        save_best='rmse',
        rule='less'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

auto_scale_lr = dict(enable=False, base_batch_size=24)
