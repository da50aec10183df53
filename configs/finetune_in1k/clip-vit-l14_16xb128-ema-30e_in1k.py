# Appendix F, large: OpenAI CLIP ViT-L/14 with FT-CLIP's published ViT-L/14 recipe: peak lr 4e-4 at batch 2048,
# 30 epochs (5 warm-up), layer decay 0.65, no drop path, no Mixup/CutMix, EMA 0.9998 (raw and EMA evaluated,
# best of each recorded).
_base_ = './clip-vit-l14_16xb128-50e_in1k.py'

base_lr = 4e-4
min_lr = 2e-6
warmup_epochs = 5
max_epochs = 30
ema_decay = 0.9998
model = dict(backbone=dict(drop_path_rate=0.0), train_cfg=None)
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min_ratio=min_lr / base_lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(type='EMAHook', momentum=1 - ema_decay, evaluate_on_ema=True, evaluate_on_origin=True),
    dict(type='fdclip_mm.BestMetricsHook', keys=['accuracy/top1', 'accuracy/top1_origin']),
]
