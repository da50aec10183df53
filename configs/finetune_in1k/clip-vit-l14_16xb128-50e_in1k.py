# Baseline row: fine-tuning OpenAI CLIP ViT-L/14 itself with Table 5's large recipe (lr 1e-3, 50 epochs, 5
# warm-up, layer decay 0.75, drop path 0.4).
_base_ = './clip-vit-b16_16xb128-100e_in1k.py'

base_lr = 1e-3
min_lr = 2e-6
warmup_epochs = 5
max_epochs = 50
model = dict(
    backbone=dict(arch='large', patch_size=14, drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='data/weights/clip/clip-vit-l14_cls.pth')),
    head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min_ratio=min_lr / base_lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
