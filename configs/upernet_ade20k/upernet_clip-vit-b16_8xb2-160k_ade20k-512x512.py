# Baseline of upernet_fd-clip-vit-b16_8xb2-160k_ade20k-512x512.py: the same UperNet recipe on OpenAI's CLIP
# ViT-B/16 itself (mmpretrain's VisionTransformer in CLIP's form: ln_pre, LN eps 1e-5, QuickGELU; CLIP's input
# statistics). The position embeddings are resized to the 32 x 32 patch grid when the checkpoint loads.
#   python tools/model_converters/clip_to_backbone.py data/weights/clip/ViT-B-16.pt \
#       data/weights/clip/clip-vit-b16_backbone.pth
#   bash tools/dist_train.sh configs/upernet_ade20k/upernet_clip-vit-b16_8xb2-160k_ade20k-512x512.py 8
# ADE20K (ADEChallengeData2016) goes to data/ade/ as mmseg expects.
_base_ = [
    '../_base_/models/upernet_vit-b16.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw_layer_decay_160k.py',
]

model = dict(
    data_preprocessor=dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305]),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=512,
        patch_size=16,
        pre_norm=True,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        drop_path_rate=0.1,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/clip/clip-vit-b16_backbone.pth'),
    ),
)
# VisionTransformer has no no_weight_decay(): its class token and position embeddings are exempted here
# (FDViT's are by no_weight_decay()).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'backbone.cls_token': dict(decay_mult=0.),
        'backbone.pos_embed': dict(decay_mult=0.),
    }))

train_dataloader = dict(batch_size=2)
