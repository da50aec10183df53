# Fine-tuning schedule of Table 5 (ViT-B/16 values; configs override lr, epochs, warm-up and layer decay):
# AdamW (0.9, 0.999), eps 1e-8, weight decay 0.05 (none on norms, biases, layer scales, cls token, position
# embeddings and RPB tables), layer-wise lr decay, gradient clipping 5.0, linear warm-up then cosine to 2e-6,
# for a total batch of 2048 (`--auto-scale-lr` rescales it). The minimum is given as a ratio of each group's
# own lr, as the official code (lr_scale multiplies the scheduled lr) does.
base_lr = 5e-3
min_lr = 2e-6
layer_decay_rate = 0.65
warmup_epochs = 20
max_epochs = 100

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='fdclip_mm.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate),
)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min_ratio=min_lr / base_lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(base_batch_size=2048, enable=False)
