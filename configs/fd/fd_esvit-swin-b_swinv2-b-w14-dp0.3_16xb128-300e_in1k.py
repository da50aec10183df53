# FD with EsViT's Swin-B (window 14) into a Swin-V2-B student (window 14), as the official
# fd_pretrain__esvit_swin_base__img224__300ep.yaml: 300 epochs, 16 x 128 = 2048 images, drop path 0.3. The official
# student fine-tunes to 85.1% top-1 (their README). Teacher: EsViT's checkpoint_best.pth (its 'teacher' backbone;
# the official code reads 'student', the same architecture), target: the last stage after its final norm, 7 x 7
# tokens of 1024 channels at 224; the student's last stage (7 x 7, 1024) is projected by a 1x1 map, so no grid
# resampling happens here, and neither side has a class token.
# The official yaml's rates are per 512 images and scaled linearly with the batch: 2e-4 / 1e-6 / 1e-5 -> 8e-4 /
# 4e-6 / 4e-5 at 2048; warm-up 10 epochs, weight decay 0.05, grad clip 3.0, crop scale (0.08, 1).
# Where we differ: the student is mmpretrain's SwinTransformerV2 (cosine attention, log-spaced continuous position
# bias with a 512-wide MLP, post-norm blocks, patch merging at the start of stages 2-4), which is the official
# SwinV2 block but not its fp32-forced layers; the last stage's window is 7 (the 7 x 7 map) where the official
# code shrinks 14 to 7 itself.
#   bash tools/dist_train.sh configs/fd/fd_esvit-swin-b_swinv2-b-w14-dp0.3_16xb128-300e_in1k.py 8 --auto-scale-lr
_base_ = [
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_adamw_300e.py',
    '../_base_/default_runtime.py',
]

base_lr = 8e-4
warmup_lr = 4e-6
min_lr = 4e-5

model = dict(
    type='fdclip_mm.FeatureDistiller',
    student=dict(
        type='mmpretrain.SwinTransformerV2',
        arch='base',  # embed 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32)
        img_size=224,
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.3,
        out_indices=(3, ),
    ),
    teacher=dict(
        type='BackboneTeacher',
        family='esvit_swin',
        backbone=dict(
            arch=dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
            img_size=224,
            window_size=14,
            stage_cfgs=[dict(), dict(), dict(), dict(window_size=7)],  # the 7 x 7 stage: one unshifted window
        ),
        checkpoint='data/weights/esvit/checkpoint_best.pth',
        dtype='auto',
    ),
    loss=dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
    target_norm='ln',
)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)

optim_wrapper = dict(
    type='fdclip_mm.CheckedAmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=base_lr),
    # no weight decay on the position-bias MLPs and attention temperatures either (the official SwinV2's
    # no_weight_decay_keywords with rpe_wd=False), besides norms, biases and 1-D parameters
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.0),
        'cpb_mlp': dict(decay_mult=0.0),
        'logit_scale': dict(decay_mult=0.0),
    }),
)
# the base's warm-up start and floor, as ratios of this peak lr
_base_.param_scheduler[0].start_factor = warmup_lr / base_lr
_base_.param_scheduler[1].eta_min_ratio = min_lr / base_lr
