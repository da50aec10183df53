# The FD-CLIP ViT-L/14 student with Table 5's large recipe as the official
# fd_finetune__clip_vit_large__img224__300ep.yaml (lr 1e-3, 50 epochs, 5 warm-up, layer decay 0.75, drop path 0.4,
# warm-up start and floor 2e-6).
_base_ = [
    '../_base_/models/fdvit-b16_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_layer_decay_l14_50e.py',
    '../_base_/default_runtime.py',
]

# The distillation run whose student this recipe fine-tunes (read by no tool; for people and the tests).
distill_config = 'configs/fd/fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k.py'

model = dict(
    backbone=dict(
        arch='large',
        patch_size=14,
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='data/weights/fd/fd-clip-vit-l14_cls.pth')),
    head=dict(in_channels=1024))
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
