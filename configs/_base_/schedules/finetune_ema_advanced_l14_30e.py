# Appendix F's advanced recipe, large: FT-CLIP's published ViT-L/14 values, peak lr 4e-4 at batch 2048, 30 epochs
# (5 warm-up), layer decay 0.65; EMA 0.9998 and the rest as for B/16 (finetune_ema_advanced.py).
_base_ = './finetune_ema_advanced.py'

base_lr = 4e-4
min_lr = 2e-6
layer_decay_rate = 0.65
warmup_epochs = 5
max_epochs = 30

optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min_ratio=min_lr / base_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
