# Small-scale reproduction, fine-tuning the student (scratch and FD rows): mmpretrain's ImageClassifier on the
# 4-layer FDViT of the distillation config (per-layer RPB, mean of patch tokens -> LayerNorm -> Linear, head
# x0.001 init), 1,000 labelled Fashion-MNIST images at 56 px, 20 epochs, drop path 0.1, label smoothing 0.1.
# As it is, the FD row: it loads the distilled student converted by tools/model_converters/fd_to_classifier.py.
# The scratch row: --cfg-options model.backbone.init_cfg=None (the official FD student's random init).
_base_ = [
    '../_base_/datasets/fashion_mnist_finetune.py',
    '../_base_/schedules/finetune_fmnist_20e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=10, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(
        type='fdclip_mm.FDViT',
        arch=dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768),
        img_size=56,
        patch_size=14,
        pos_embed='rpb',
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/reproduce/weights/fd_main_cls.pth', prefix='backbone.'),
    ),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=192,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001, bias=0.),
    ),
)
default_hooks = dict(logger=dict(interval=16), checkpoint=dict(interval=20, max_keep_ckpts=1))
log_processor = dict(window_size=16)
randomness = dict(seed=0)
