# The "fine-tune CLIP itself" baseline: OpenAI CLIP ViT-B/16 as mmpretrain's VisionTransformer (pre_norm=True is
# CLIP's ln_pre, LN eps 1e-5, QuickGELU), converted by tools/model_converters/clip_to_classifier.py, with the same
# classifier as the distilled student (mean of patch tokens -> LayerNorm -> Linear, head init x0.001) and CLIP's
# own input statistics.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=1000,
        mean=[122.7709383, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305],
        to_rgb=True),
    backbone=dict(
        type='VisionTransformer',
        arch='base',
        img_size=224,
        patch_size=16,
        pre_norm=True,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/clip/clip-vit-b16_cls.pth', prefix='backbone.'),
    ),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001, bias=0.),
    ),
    train_cfg=dict(
        augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
