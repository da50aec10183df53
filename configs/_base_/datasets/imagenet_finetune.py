# ImageNet-1K for fine-tuning (Table 5 of the supplement): RandomResizedCrop 224 + flip, RandAugment 9/0.5
# (timm's rand-m9-mstd0.5-inc1), random erasing 0.25 (per-pixel random fill), bicubic; test: resize 256, centre
# crop 224. Table 5 also lists colour jitter 0.4: timm (which the official code uses to build these transforms)
# applies colour jitter only when no auto-augment policy is set, so with RandAugment on there is none here either.
# Mixup 0.8 / CutMix 1.0 and label smoothing 0.1 live in the model (batch augments, loss).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
img_size = 224
mean = [123.675, 116.28, 103.53]  # ImageNet statistics (the distilled student was trained with them)
std = [58.395, 57.12, 57.375]
bgr_mean = mean[::-1]
bgr_std = std[::-1]

train_pipeline = [
    dict(type='fdclip_mm.DecodeRandomResizedCrop', scale=img_size, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]

# 16 GPUs x 128 = 2048, the batch of Table 5; `--auto-scale-lr` rescales the lr to the batch really run.
# Workers per GPU (docs/en/advanced_guides/data_loading.md): an H100 fine-tunes a ViT-B/16 at ~7,500 images/s
# (~40% of its bf16 peak), one worker makes 400-600 images/s of this pipeline (RandAugment and random erasing
# included) on one core (benchmarks/README.md): 13-19. 16 is what an 8-GPU node of 128 cores gives each GPU;
# with fewer cores fine-tuning is loader-bound (fdclip_mm.LoaderReportHook says so in the log).
train_dataloader = dict(
    batch_size=128,
    num_workers=16,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),  # no repeated augmentation (Table 5)
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
