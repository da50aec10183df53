# Table 5, large: peak lr 1e-3 at batch 2048, 50 epochs (5 warm-up), layer decay 0.75; warm-up start and floor
# 2e-6 for every group (official fd_finetune__clip_vit_large__img224__300ep.yaml: 5e-7 at batch 512); the rest
# as for B/16.
_base_ = './finetune_adamw_layer_decay.py'

base_lr = 1e-3
warmup_lr = 2e-6
min_lr = 2e-6
layer_decay_rate = 0.75
warmup_epochs = 5
max_epochs = 50

optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
_base_.param_scheduler[0].update(warmup_lr_ratio=warmup_lr / base_lr, end=warmup_epochs)
_base_.param_scheduler[1].update(
    T_max=max_epochs - warmup_epochs, min_lr_ratio=min_lr / base_lr, begin=warmup_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs)
