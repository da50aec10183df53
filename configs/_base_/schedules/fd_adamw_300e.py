# Distillation schedule (Table 4), as the official code runs it: AdamW (0.9, 0.999), eps 1e-8, wd 0.05 (none on
# norms, biases, other 1-D parameters, cls token and position embeddings; RPB tables ARE decayed, as there),
# peak lr 1.2e-3 at batch 2048, 10 warm-up epochs from 2e-6, cosine to 2e-5, grad clip 3.0. The official yaml
# files give 3e-4 / 5e-7 / 5e-6 at batch 512 and scale all three linearly with the batch; here the warm-up start
# and the floor are ratios of the peak lr, so `--auto-scale-lr` scales the three together too.
# `paramwise_cfg.rel_pos_bias_decay_mult=0.` exempts RPB tables (a departure, BEiT's fine-tuning choice).
# Full-size configs switch on mixed precision (AmpOptimWrapper); `--amp` does the same.
# Fused AdamW: one kernel per parameter group (+3% per step on CPU; benchmarks/README.md).
base_lr = 1.2e-3
warmup_lr = 2e-6
min_lr = 2e-5
warmup_epochs = 10
max_epochs = 300

optim_wrapper = dict(
    type='fdclip_mm.CheckedOptimWrapper',
    constructor='fdclip_mm.TrainableOptimWrapperConstructor',  # the frozen teacher stays out of the optimizer
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, fused=True),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        }),
)

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / base_lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min_ratio=min_lr / base_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()

# Table 4's learning rate is for a total batch of 2048; `--auto-scale-lr` rescales it to the real batch.
auto_scale_lr = dict(base_batch_size=2048, enable=False)
