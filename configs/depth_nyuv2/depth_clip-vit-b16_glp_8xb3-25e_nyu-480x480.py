# Baseline: OpenAI CLIP ViT-B/16 fine-tuned on NYUv2 depth with the same head, recipe and two-window test as
# depth_fd-clip-vit-b16_glp_8xb3-25e_nyu-480x480.py. The backbone is mmpretrain's VisionTransformer in CLIP's form
# (pre-norm ln_pre, qkv bias, LN eps 1e-5, QuickGELU) with CLIP's input statistics; its position embedding is
# resized from 14 x 14 to the 30 x 30 grid of 480-px crops when the checkpoint loads. As the FD student, it keeps
# its own final norm (CLIP's ln_post) on the last block, the one the head reads.
# Init checkpoint: data/weights/clip/clip-vit-b16_backbone-ln-post.pth, written from OpenAI's file by
#   python tools/model_converters/clip_to_backbone.py --final-norm data/weights/clip/ViT-B-16.pt \
#       data/weights/clip/clip-vit-b16_backbone-ln-post.pth
# Train (8 GPUs x 3), then test:
#   bash tools/dist_train.sh configs/depth_nyuv2/depth_clip-vit-b16_glp_8xb3-25e_nyu-480x480.py 8
#   bash tools/dist_test.sh configs/depth_nyuv2/depth_clip-vit-b16_glp_8xb3-25e_nyu-480x480.py \
#       WORK_DIR/best_rmse_iter_*.pth 8
_base_ = ['../_base_/models/depth_glp_fdvit-b16.py', '../_base_/schedules/depth_glp_adamw_8xb3-25e_nyu.py']

model = dict(
    data_preprocessor=dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305]),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=(480, 480),
        patch_size=16,
        pre_norm=True,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        drop_path_rate=0.3,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/clip/clip-vit-b16_backbone-ln-post.pth')))
