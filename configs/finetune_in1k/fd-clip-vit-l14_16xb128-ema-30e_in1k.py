# Appendix F, large: The FD-CLIP ViT-L/14 student with FT-CLIP's published ViT-L/14 recipe: peak lr 4e-4 at batch 2048,
# 30 epochs (5 warm-up), layer decay 0.65, no drop path, no Mixup/CutMix, EMA 0.9998 (raw and EMA evaluated,
# best of each recorded).
_base_ = [
    '../_base_/models/fdvit-b16_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_ema_advanced_l14_30e.py',
    '../_base_/default_runtime.py',
]

# The distillation run whose student this recipe fine-tunes (read by no tool; for people and the tests).
distill_config = 'configs/fd/fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k.py'

model = dict(
    backbone=dict(
        arch='large',
        patch_size=14,
        drop_path_rate=0.0,
        init_cfg=dict(checkpoint='data/weights/fd/fd-clip-vit-l14_cls.pth')),
    head=dict(in_channels=1024),
    train_cfg=None)
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
