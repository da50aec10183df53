# FD-CLIP ViT-B/16, 100 epochs (the "Full input + 100ep" row of the supplement's Table 2). As in the official
# 100-epoch config: drop path 0.1 and a milder crop, RandomResizedCrop scale (0.67, 1).
_base_ = './fd_clip-vit-b16_vit-b16-dp0.2_16xb128-300e_in1k.py'

max_epochs = 100
warmup_epochs = 10
model = dict(student=dict(drop_path_rate=0.1))
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(
            type='fdclip_mm.DecodeRandomResizedCrop',
            scale=224,
            crop_ratio_range=(0.67, 1.0),
            interpolation='bilinear',
        ),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ]))
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
