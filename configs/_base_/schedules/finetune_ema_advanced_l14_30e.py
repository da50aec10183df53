# Appendix F's advanced recipe, large: FT-CLIP's published ViT-L/14 values, peak lr 4e-4 at batch 2048, 30 epochs
# (5 warm-up), layer decay 0.65; EMA 0.9998 and the rest as for B/16 (finetune_ema_advanced.py).
_base_ = './finetune_ema_advanced.py'

base_lr = 4e-4
layer_decay_rate = 0.65
warmup_epochs = 5
max_epochs = 30

optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
_base_.param_scheduler[0].end = warmup_epochs
_base_.param_scheduler[1].update(
    T_max=max_epochs - warmup_epochs, eta_min_ratio=_base_.min_lr / base_lr, begin=warmup_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs)
