# Fine-tuning the FD-EsViT Swin-V2-B student on ImageNet-1K as the official fd_finetune__esvit_swin_base__img224__300ep
# .yaml: 100 epochs (20 warm-up), drop path 0.4, layer decay 0.8, weight decay 0.05, 64 images x 16 GPUs = 1024 (the
# yaml notes 2048 would do as well). Its rates are per 512 images, scaled linearly: 1.25e-3 / 2.5e-7 / 2.5e-7 ->
# 2.5e-3 / 5e-7 / 5e-7 at 1024. The official README reports 85.1% top-1.
#   python tools/model_converters/fd_to_backbone.py work_dirs/fd_esvit data/weights/fd/fd-esvit-swinv2-b-w14.pth
#   bash tools/dist_train.sh configs/finetune_in1k/fd-esvit-swinv2-b-w14_16xb64-100e_in1k.py 8 --auto-scale-lr
_base_ = [
    '../_base_/models/swinv2-b-w14_cls.py',
    '../_base_/datasets/imagenet_finetune.py',
    '../_base_/schedules/finetune_adamw_layer_decay.py',
    '../_base_/default_runtime.py',
]

distill_config = 'configs/fd/fd_esvit-swin-b_swinv2-b-w14-dp0.3_16xb128-300e_in1k.py'
base_lr = 2.5e-3
warmup_lr = 5e-7
min_lr = 5e-7

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
optim_wrapper = dict(
    optimizer=dict(lr=base_lr),
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.0),
            'cpb_mlp': dict(decay_mult=0.0),
            'logit_scale': dict(decay_mult=0.0),
        }))
# the base's schedule (20 warm-up epochs of 100) with this recipe's warm-up start and floor
_base_.param_scheduler[0].warmup_lr_ratio = warmup_lr / base_lr
_base_.param_scheduler[1].min_lr_ratio = min_lr / base_lr
auto_scale_lr = dict(base_batch_size=1024)
default_hooks = dict(checkpoint=dict(save_best='accuracy/top1', rule='greater'))
randomness = dict(seed=0)
