# Baseline row: fine-tuning OpenAI CLIP ViT-L/14 itself with Table 5's large recipe (lr 1e-3, 50 epochs, 5 warm-up,
# layer decay 0.75, drop path 0.4).
_base_ = [
    '../_base_/models/clip-vit-b16_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_layer_decay_l14_50e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        arch='large',
        patch_size=14,
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='data/weights/clip/clip-vit-l14_cls.pth')),
    head=dict(in_channels=1024))
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
