# Mask R-CNN on COCO fine-tuning OpenAI CLIP ViT-B/16 itself (the baseline of the FD-CLIP config beside
# this one, same recipe): mmpretrain's VisionTransformer in CLIP's form (ln_pre, LN eps 1e-5, QuickGELU,
# qkv biases), no final norm, blocks 4/6/8/12 -> ViTPyramidNeck -> FPN, CLIP's input statistics.
# Init checkpoint (OpenAI's ViT-B-16.pt):
#   python tools/model_converters/clip_to_backbone.py data/weights/clip/ViT-B-16.pt \
#       data/weights/clip/clip-vit-b16_backbone.pth
# Train (COCO in data/coco/):
#   bash tools/dist_train.sh configs/mask_rcnn_coco/mask-rcnn_clip-vit-b16_fpn_ms-crop-1x_coco.py 8
_base_ = [
    '../_base_/models/mask-rcnn_vit-b16_fpn.py',
    './_base_/coco-instance_ms-crop.py',
    '../_base_/schedules/mask-rcnn_adamw-ld0.75-1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579, 70.32316305]),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=1024,
        patch_size=16,
        pre_norm=True,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/clip/clip-vit-b16_backbone.pth'),
    ),
)
