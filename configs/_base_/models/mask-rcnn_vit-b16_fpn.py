# Mask R-CNN (mmdet's R50-FPN model) on a plain ViT-B/16: the backbone's feature maps of blocks 4, 6, 8 and 12
# (stride 16) become a stride 4/8/16/32 pyramid through fdclip_mm.ViTPyramidNeck, then mmdet's FPN.
# mmengine builds a list of module configs as one Sequential, so `neck` runs the two in turn.
# Each config replaces the backbone (`_delete_=True`) and sets the data preprocessor's mean / std.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(neck=[
    dict(
        type='fdclip_mm.ViTPyramidNeck',
        embed_dims=768,
        rescales=(4, 2, 1, 0.5),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    dict(type='FPN', in_channels=[768] * 4, out_channels=256, num_outs=5),
])
