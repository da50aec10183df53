# mmpretrain ImageClassifier on a distilled FDViT-B/16: per-layer RPB (initialised from the distilled shared
# table by tools/model_converters/fd_to_classifier.py), no final norm, mean of the patch tokens -> LayerNorm ->
# Linear. Head init: trunc_normal(std 0.02) scaled by 0.001 as in BEiT/FD == TruncNormal(std 2e-5) (its +-2
# truncation is 1e5 std away either way); bias 0. Label smoothing 0.1; Mixup 0.8 / CutMix 1.0 (the alphas of
# Table 5's "Mixup 0.8 / Cutmix 1.0"; one of the two per batch, as timm's switch_prob 0.5).
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='fdclip_mm.FDViT',
        arch='base',
        img_size=224,
        patch_size=16,
        pos_embed='rpb',
        layer_scale_init_value=0.1,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-clip-vit-b16_cls.pth', prefix='backbone.'),
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
