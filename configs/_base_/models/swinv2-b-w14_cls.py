# mmpretrain ImageClassifier on the distilled Swin-V2-B (window 14) of configs/fd/fd_esvit-swin-b_*: global average pool
# of the last stage (after norm3) -> Linear. The init checkpoint is the student as
# tools/model_converters/fd_to_backbone.py writes it (mmpretrain's own keys: nothing to convert). Label smoothing 0.1;
# Mixup 0.8 / CutMix 1.0, one of the two per batch.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='mmpretrain.SwinTransformerV2',
        arch='base',
        img_size=224,
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.4,
        out_indices=(3, ),
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-esvit-swinv2-b-w14.pth'),
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001, bias=0.),
    ),
    train_cfg=dict(
        augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
