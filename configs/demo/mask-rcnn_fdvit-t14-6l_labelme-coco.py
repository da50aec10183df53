# A real, small Mask R-CNN run on CPU: the distilled demo student (work_dirs/demo/student_backbone.pth,
# written by `make demo`: 6 layers, width 192, patch 14, shared RPB at 112 px) fine-tuned on the 3 labelme VOC
# photos in COCO format (data/dense/coco, written by scripts/fetch_dense_data.py; validation = the same
# photos), then evaluated by mmdet's CocoMetric (bbox + segm). The recipe's machinery is kept (ViTPyramidNeck
# + FPN, per-layer RPB resized to the grid, AdamW with layer decay 0.75, multi-scale resize + flip) at
# <= 448 px; for CPU speed the FPN and heads are 128 channels wide (256 in the recipe) and the RoI heads
# train on 128 RoIs per image (512).
# With patch 14 the pyramid strides are 3.5 / 7 / 14 / 28 (56 for FPN's extra level): mmdet's anchor
# generator places anchors at index x stride and RoIAlign uses spatial_scale = 1 / stride, both exact for
# float strides, so they are given as they are; padding to a multiple of 56 makes each level's size exactly
# input size / stride (tests/configs/test_mask_rcnn_configs.py::test_demo_float_strides checks both).
# Measured (40 iterations on 2 idle CPU cores, about 1.5 min with the evaluation): bbox mAP 0.424, segm mAP
# 0.298 (AP50 0.805 / 0.522) on the 3 photos it was trained on: the machinery runs end to end on real
# weights and photos; 3 images say nothing about generalisation.
#   python tools/train.py configs/demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py \
#       --work-dir work_dirs/dense_demo/mask_rcnn
#   python tools/test.py configs/demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py \
#       work_dirs/dense_demo/mask_rcnn/iter_40.pth
_base_ = [
    '../_base_/models/mask-rcnn_vit-b16_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/mask-rcnn_adamw-ld0.75-1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

embed_dims = 192
channels = 128  # FPN and heads
strides = [3.5, 7, 14, 28]
max_iters = 40
data_root = 'data/dense/coco/'

model = dict(
    data_preprocessor=dict(pad_size_divisor=56),
    backbone=dict(
        _delete_=True,
        type='fdclip_mm.FDViT',
        arch=dict(embed_dims=embed_dims, num_layers=6, num_heads=3, feedforward_channels=768),
        img_size=448,
        patch_size=14,
        pos_embed='rpb',
        layer_scale_init_value=0.1,
        out_type='featmap',
        out_indices=(1, 2, 3, 5),
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/student_backbone.pth'),
    ),
    neck=[
        dict(
            type='fdclip_mm.ViTPyramidNeck',
            embed_dims=embed_dims,
            rescales=(4, 2, 1, 0.5),
            norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[embed_dims] * 4, out_channels=channels, num_outs=5),
    ],
    rpn_head=dict(in_channels=channels, feat_channels=channels, anchor_generator=dict(strides=strides + [56])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels, featmap_strides=strides),
        bbox_head=dict(in_channels=channels),
        mask_roi_extractor=dict(out_channels=channels, featmap_strides=strides),
        mask_head=dict(in_channels=channels, conv_out_channels=channels)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=128))),
)

backend_args = None
train_pipeline = [
    dict(type='fdclip_mm.CheckedLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoiceResize', scales=[(448, 336), (448, 392), (448, 448)], keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(448, 448), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[30], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=5e-4))

default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(by_epoch=False, interval=max_iters),
)
log_processor = dict(by_epoch=False)
