# COCO instance segmentation with the multi-scale + random-crop training augmentation of mmdet's
# transformer recipes (Swin Mask R-CNN "ms-crop", from DETR): short side 480-800 (long side <= 1333), or
# resize to 400-600, crop 384-600 and resize again; 2 images per GPU. Training images are read by
# fdclip_mm.CheckedLoadImageFromFile (a broken file is named); test images by mmcv's LoadImageFromFile, which
# mmdet's DetInferencer recognises and replaces.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

backend_args = None
ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333), (704, 1333),
             (736, 1333), (768, 1333), (800, 1333)]
crop_scales = [(400, 1333), (500, 1333), (600, 1333)]
crop_size = (384, 600)

train_pipeline = [
    dict(type='fdclip_mm.CheckedLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=crop_scales, keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=crop_size, allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=ms_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
