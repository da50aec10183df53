# Table 5, ViT-B/16 with the other end of its lr grid: peak lr 6e-3 (at batch 2048); layer decay 0.6 and drop
# path 0.3 as the 300-epoch student's default; warm-up start and floor stay 1e-6 for every group.
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

base_lr = 6e-3
optim_wrapper = dict(optimizer=dict(lr=base_lr))
# the base's warm-up start and floor: 1e-6 for every group, as ratios of this peak lr
_base_.param_scheduler[0].warmup_lr_ratio = 1e-6 / base_lr
_base_.param_scheduler[1].min_lr_ratio = 1e-6 / base_lr
