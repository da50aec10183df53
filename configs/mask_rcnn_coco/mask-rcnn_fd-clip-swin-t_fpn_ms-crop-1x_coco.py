# Mask R-CNN on COCO with the FD-CLIP Swin-T student (configs/fd/fd_clip-vit-b16_swin-t-dp0.1_16xb128-300e_in1k.py):
# mmdet's own SwinTransformer (its Swin-T Mask R-CNN model: stages 1-4 -> FPN) holding the distilled weights, on the
# same data, schedule and optimiser as the FD ViT-B/16 config beside it (appendix H: batch 16, AdamW lr 2e-4, layer
# decay 0.75 by mmpretrain's Swin depth rule, lr x0.1 at epochs 9 and 11 of 12), so that students compare on one
# recipe. As in mmdet's Swin recipes, position tables are not weight-decayed.
# Init checkpoint: the student's last stage norm comes from distillation, the output norms of stages 0-2 start
# as identity (fd_to_backbone.py --out-indices writes them), so every key of mmdet's Swin is in the file:
#   python tools/model_converters/fd_to_backbone.py work_dirs/fd_clip-vit-b16_swin-t-dp0.1_16xb128-300e_in1k \
#       data/weights/fd/fd-clip-swin-t_backbone.pth --out-indices 0 1 2 3
#   bash tools/dist_train.sh configs/mask_rcnn_coco/mask-rcnn_fd-clip-swin-t_fpn_ms-crop-1x_coco.py 8
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco-instance_ms-crop.py',
    '../_base_/schedules/mask-rcnn_adamw-ld0.75-1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',  # mmdet's
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        convert_weights=False,  # the file holds mmpretrain's keys, which are mmdet's
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-clip-swin-t_backbone.pth'),
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.),
    }))
