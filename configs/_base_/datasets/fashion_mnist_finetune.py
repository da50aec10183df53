# Fashion-MNIST for the small-scale reproduction's fine-tuning (scripts/fetch_fashion_mnist.py): a labelled subset
# of the training images (labelled_1k.txt: 100 per class; labelled_5k.txt: 500 per class), the held-out
# validation split (first 2,000 of val.txt) during training and the official 10,000 test images for tools/test.py.
# Train: RandomResizedCrop img_size (scale 0.35-1) + flip; test: resize to img_size. Grey images as 3 channels.
img_size = 56
data_root = 'data/fashion_mnist'

train_pipeline = [
    dict(
        type='fdclip_mm.DecodeRandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.35, 1.0),
        interpolation='bicubic',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
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
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/labelled_1k.txt',
        data_prefix='images',
        pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='images',
        indices=2000,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = dict(
    batch_size=256,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/test.txt',
        data_prefix='images',
        pipeline=test_pipeline),
)
test_evaluator = val_evaluator
