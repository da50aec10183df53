# Fine-tuning schedule of the small-scale reproduction, one recipe for every model (scratch, FD students, teacher):
# Table 5 scaled down: AdamW (0.9, 0.999), wd 0.05, layer decay 0.85, 2 warm-up epochs, cosine over 20 epochs
# (300 iterations of 64 on 1,000 images), gradient clipping 5.0. The peak lr below is only the default:
# tools/reproduce.py runs every model at each lr of one grid (3e-5, 1e-4, 3e-4, 1e-3), picks each model's lr on the
# validation split, and only then tests it; nothing is tuned on the test set.
base_lr = 1e-3
min_lr = 1e-6
warmup_epochs = 2
max_epochs = 20

optim_wrapper = dict(
    type='fdclip_mm.CheckedOptimWrapper',
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(layer_decay_rate=0.85),
)
param_scheduler = [
    dict(
        type='fdclip_mm.TimmLinearWarmupLR',
        warmup_lr_ratio=min_lr / base_lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='fdclip_mm.TimmCosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        min_lr_ratio=min_lr / base_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64, enable=False)
