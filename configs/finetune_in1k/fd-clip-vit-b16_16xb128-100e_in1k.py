# Fine-tuning the FD-CLIP ViT-B/16 student on ImageNet-1K with Table 5's recipe: peak lr 5e-3 at batch 2048,
# 100 epochs (20 warm-up), layer decay 0.65, drop path 0.1. Siblings: -dp0.2 / -dp0.3, -lr6e-3-ld0.6.
#   python tools/model_converters/fd_to_classifier.py work_dirs/fd/epoch_300.pth data/weights/fd/fd-clip-vit-b16_cls.pth
#   bash tools/dist_train.sh configs/finetune_in1k/fd-clip-vit-b16_16xb128-100e_in1k.py 8 --auto-scale-lr
_base_ = [
    '../_base_/models/fdvit-b16_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_layer_decay.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
