# Appendix F: the FD-CLIP ViT-B/16 student fine-tuned with the advanced recipe of FT-CLIP: EMA 0.9998 with the raw and
# the EMA weights evaluated every epoch and the best of each recorded; lr 6e-4 at batch 2048, 50 epochs (10 warm-up),
# layer decay 0.6, no drop path, no Mixup/CutMix.
_base_ = [
    '../_base_/models/fdvit-b16_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_ema_advanced.py',
    '../_base_/default_runtime.py',
]

# The distillation run whose student this recipe fine-tunes (read by no tool; for people and the tests).
distill_config = 'configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(backbone=dict(drop_path_rate=0.0), train_cfg=None)
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
