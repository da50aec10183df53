# Table 5, ViT-B/16 with the other end of its lr grid: peak lr 6e-3 (at batch 2048); layer decay 0.6 and drop
# path 0.3 as the 300-epoch student's default; warm-up start and floor stay 1e-6 for every group.
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

base_lr = 6e-3
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(
        type='fdclip_mm.TimmLinearWarmupLR',
        warmup_lr_ratio=1e-6 / base_lr,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='fdclip_mm.TimmCosineAnnealingLR',
        T_max=80,
        min_lr_ratio=1e-6 / base_lr,
        by_epoch=True,
        begin=20,
        end=100,
        convert_to_iter_based=True),
]
