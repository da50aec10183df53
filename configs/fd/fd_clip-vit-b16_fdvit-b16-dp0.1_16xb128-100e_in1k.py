# FD-CLIP ViT-B/16, 100 epochs (the "Full input + 100ep" row of the supplement's Table 2). As in the official
# 100-epoch config: drop path 0.1 and a milder crop, RandomResizedCrop scale (0.67, 1).
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

max_epochs = 100
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
# the base's schedule (warm-up + cosine) ended at 100 epochs
_base_.param_scheduler[1].update(T_max=max_epochs - _base_.warmup_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs)
