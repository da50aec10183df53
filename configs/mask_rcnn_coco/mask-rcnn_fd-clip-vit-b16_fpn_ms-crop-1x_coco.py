# Mask R-CNN on COCO with the FD-CLIP ViT-B/16 student (supplement, appendix H): per-layer relative position
# bias (the distilled shared table is copied into every layer and resized to the grid when loaded), blocks
# 4/6/8/12 -> ViTPyramidNeck -> FPN, ImageNet input statistics, ms-crop augmentation, 12 epochs, batch 16,
# AdamW lr 2e-4, layer decay 0.75, lr x0.1 at epochs 9 and 11.
# Init checkpoint data/weights/fd/fd-clip-vit-b16_backbone.pth: the authors' released distilled FD-CLIP ViT-B/16
# (configs/fd/metafile.yml, Converted From) through
#   python tools/model_converters/official_fd_to_mmpretrain.py RELEASED.pth data/weights/fd/fd-clip-vit-b16_backbone.pth
# or, after distilling with configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py yourself:
#   python tools/model_converters/fd_to_backbone.py \
#       work_dirs/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k \
#       data/weights/fd/fd-clip-vit-b16_backbone.pth
# Train (COCO in data/coco/):
#   bash tools/dist_train.sh configs/mask_rcnn_coco/mask-rcnn_fd-clip-vit-b16_fpn_ms-crop-1x_coco.py 8
_base_ = [
    '../_base_/models/mask-rcnn_vit-b16_fpn.py',
    './_base_/coco-instance_ms-crop.py',
    '../_base_/schedules/mask-rcnn_adamw-ld0.75-1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='fdclip_mm.FDViT',
        arch='base',
        # the largest padded input (1333 -> 1344): every image's grid is at most 84 x 84, so the RPB tables
        # (resized once from the distilled 14 x 14 when loaded) are only cropped per image, never stretched
        img_size=1344,
        patch_size=16,
        pos_embed='rpb',
        layer_scale_init_value=0.1,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-clip-vit-b16_backbone.pth'),
    ), )
