# Masked-input FD (appendix C, Table 2: "25% input + 400ep"): the 100-epoch masked config for 400 epochs.
_base_ = './fd_clip-vit-b16_vit-b16-mask75-dp0.1_16xb128-100e_in1k.py'

max_epochs = 400
warmup_epochs = 10
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=2e-6 / 1.2e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min_ratio=2e-5 / 1.2e-3,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
