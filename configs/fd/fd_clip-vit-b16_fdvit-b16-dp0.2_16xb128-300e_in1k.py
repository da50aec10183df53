# FD-CLIP ViT-B/16, the paper's main setting: 300 epochs on ImageNet-1K, 16 GPUs x 128 images = 2048, drop path
# 0.2 (Table 4). The dp0.1 / dp0.3 files beside this one change only the student's stochastic depth.
#   bash tools/dist_train.sh configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py 8 --auto-scale-lr
_base_ = [
    '../_base_/models/fd_clip-vit-b16_fdvit-b16.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_adamw_300e.py',
    '../_base_/default_runtime.py',
]

# Mixed precision; tools/train.py picks the dtype by hardware (docs/en/advanced_guides/precision.md): bf16
# without loss scaling on GPUs with native bf16 (A100, H100), fp16 with dynamic loss scaling on V100 as in the
# paper's runs.
optim_wrapper = dict(type='fdclip_mm.CheckedAmpOptimWrapper', loss_scale='dynamic')
