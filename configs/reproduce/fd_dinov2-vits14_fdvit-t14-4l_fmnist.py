# Small-scale reproduction, distillation (docs/en/user_guides/reproduction.md; `make reproduce` runs it): the real
# DINOv2 ViT-S/14 (scripts/fetch_demo_data.py) distilled into a 4-layer FDViT (width 192, 3 heads, patch 14,
# shared RPB) on 10,000 unlabelled Fashion-MNIST training images at 56 px (a 4 x 4 patch grid), 10 epochs.
# Table 4's recipe scaled down: AdamW, wd 0.05, peak lr 1.5e-3 at batch 128, 1 warm-up epoch, cosine to 1e-5,
# grad clip 3.0, drop path 0.1. The fixed view lets tools/cache_teacher_targets.py compute the teacher's
# targets once (model.target_cache=FILE); without a cache the teacher runs every step, with the same result.
_base_ = [
    '../_base_/models/fd_dinov2-vits14_fdvit-t14.py',
    '../_base_/datasets/fashion_mnist_fd.py',
    '../_base_/schedules/fd_adamw_300e.py',
    '../_base_/default_runtime.py',
]

img_size = 56
max_epochs = 10
warmup_epochs = 1

model = dict(
    student=dict(arch=dict(num_layers=4), img_size=img_size),
    teacher=dict(img_size=img_size),
    target_cache=None,  # or a file of tools/cache_teacher_targets.py
)

optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
_base_.param_scheduler[0].update(start_factor=1e-2, end=warmup_epochs)
_base_.param_scheduler[1].update(
    T_max=max_epochs - warmup_epochs, eta_min_ratio=1e-5 / 1.5e-3, begin=warmup_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=20)
randomness = dict(seed=0)
