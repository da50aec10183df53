# CPU demo of the NYUv2 depth recipe on real data: the demo's distilled student (configs/demo/
# fd_dinov2-vits14_fdvit-t14-6l_demo.py: 6 layers, width 192, patch 14) with the GLP-style head, trained for 60
# iterations on one Middlebury stereo frame laid out as NYU (data/dense/nyu, scripts/fetch_dense_data.py: left
# crop -> train, right crop -> test) and evaluated with mmseg's DepthMetric after the two-window test: the test
# frame is resized to 299 x 224 and predicted in two 224 x 224 windows (x = 0 and x = 75), each also flipped.
# Init checkpoint: work_dirs/demo/student_backbone.pth (written by `make demo`). Run:
#   python tools/train.py configs/demo/depth_fdvit-t14-6l_middlebury-nyu.py --work-dir work_dirs/dense_demo/depth
#   python tools/test.py configs/demo/depth_fdvit-t14-6l_middlebury-nyu.py work_dirs/dense_demo/depth/iter_60.pth
_base_ = ['../_base_/models/depth_glp_fdvit-b16.py', '../_base_/schedules/depth_glp_adamw_8xb3-25e_nyu.py']

crop_size = (224, 224)  # 16 x 16 patches of 14 px
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=192, num_layers=6, num_heads=3, feedforward_channels=768),
        img_size=crop_size,
        patch_size=14,
        out_indices=(5, ),
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='work_dirs/demo/student_backbone.pth')),
    decode_head=dict(in_channels=[192], in_index=0, feature_stride=14, channels=24),
    test_cfg=dict(crop_size=crop_size))

data_root = 'data/dense/nyu'
scale = (2000, 224)  # short side 224: 640 x 480 frames -> 299 x 224
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomDepthMix', prob=0.25),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=51,
        contrast_range=(0.8, 1.2),
        saturation_range=(0.8, 1.2),
        hue_delta=20),
    dict(type='BioMedicalRandomGamma', prob=0.5, gamma_range=(0.8, 1.2)),
    dict(
        type='PackSegInputs',
        meta_keys=('img_path', 'depth_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                   'flip_direction', 'category_id')),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(
        type='PackSegInputs',
        meta_keys=('img_path', 'depth_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                   'flip_direction', 'category_id')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

iters_per_epoch = 20  # an "epoch" of the demo: validation and checkpoint interval
max_iters = 60
base_lr = 1e-3
param_scheduler = [
    dict(type='LinearLR', start_factor=0.06, end_factor=1.0, by_epoch=False, begin=0, end=max_iters // 2),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.06, by_epoch=False, begin=max_iters // 2, end=max_iters),
]
optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_iters=max_iters, val_interval=iters_per_epoch)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=iters_per_epoch, save_last=True))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
