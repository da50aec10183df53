# Table 5, ViT-B/16 with the other end of its grids: peak lr 6e-3 (at batch 2048) and layer decay 0.6.
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

base_lr = 6e-3
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=0.6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, eta_min_ratio=2e-6 / base_lr, by_epoch=True, begin=20, end=100,
         convert_to_iter_based=True),
]
