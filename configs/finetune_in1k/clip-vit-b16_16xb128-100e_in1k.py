# Baseline row: fine-tuning OpenAI CLIP ViT-B/16 itself with the same Table 5 recipe as the FD student.
#   python tools/model_converters/clip_to_classifier.py data/weights/clip/ViT-B-16.pt \
#       data/weights/clip/clip-vit-b16_cls.pth
#   bash tools/dist_train.sh configs/finetune_in1k/clip-vit-b16_16xb128-100e_in1k.py 8 --auto-scale-lr
_base_ = [
    '../_base_/models/clip-vit-b16_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_layer_decay.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
