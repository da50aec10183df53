# Fashion-MNIST for the small-scale reproduction's distillation (scripts/fetch_fashion_mnist.py lays it out):
# unlabelled training images, each resized once from 28 to img_size px (bicubic): a fixed view, so the teacher's
# targets can be cached (tools/cache_teacher_targets.py). The labels in the annotation file are never read.
# The held-out feature error is measured on the first 256 validation images.
img_size = 56
data_root = 'data/fashion_mnist'

train_pipeline = [
    dict(type='fdclip_mm.CheckedLoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [  # the same view, read by the loader the libraries' inferencers recognise
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/unlabelled.txt',
        data_prefix='images',
        indices=10000,
        pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='images',
        indices=256,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='fdclip_mm.DistillLossMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator
