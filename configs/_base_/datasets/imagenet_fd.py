# ImageNet-1K for feature distillation (Table 4): RandomResizedCrop 224, scale (0.08, 1), flip, no colour jitter.
# The crop is resized bilinearly, as the official pipeline does (torchvision's RandomResizedCrop default).
# Both networks see the same crop; the data preprocessor normalises it twice.
dataset_type = 'ImageNet'
data_root = 'data/imagenet'

train_pipeline = [
    dict(type='fdclip_mm.DecodeRandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0), interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# Workers per GPU = the images/s a GPU's step takes / the images/s of one worker (the rule of
# docs/en/advanced_guides/data_loading.md): an H100 runs the ViT-B/16 step at ~5,000 images/s (~40% of its bf16
# peak), one worker makes ~1,000 images/s of this pipeline from 500x375 JPEGs on one core (benchmarks/README.md):
# 5; 8 leave room for ImageNet's larger files (~110 KB against 47 KB: decoding time grows with the bytes) and
# slower cores. Each worker keeps torch's default 2 batches in flight (~0.4 s of steps queued by 8 workers).
# fdclip_mm.LoaderReportHook warns in the log when the steps wait for data, with the rate each worker reached.
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
# The held-out distillation loss is measured on the first 10k validation images.
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=val_pipeline, indices=10000),
)
val_evaluator = dict(type='fdclip_mm.DistillLossMetric')
# `tools/test.py CONFIG CKPT` reports the same held-out distillation loss.
test_dataloader = val_dataloader
test_evaluator = val_evaluator
