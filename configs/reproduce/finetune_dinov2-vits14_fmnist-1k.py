# Small-scale reproduction, the reference row: the DINOv2 ViT-S/14 teacher itself fine-tuned with the students'
# recipe (mmpretrain VisionTransformer arch dinov2-s, same head, data and schedule, ImageNet statistics as DINOv2).
#   python tools/model_converters/dinov2_to_classifier.py data/demo/weights/dinov2_vits14.pth \
#       work_dirs/reproduce/weights/dinov2_cls_56.pth --img-size 56
_base_ = './finetune_fdvit-t14-4l_fmnist-1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),  # 'dinov2-s'
        img_size=56,
        patch_size=14,
        layer_scale_init_value=1e-5,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(
            type='Pretrained', checkpoint='work_dirs/reproduce/weights/dinov2_cls_56.pth', prefix='backbone.'),
    ),
    head=dict(in_channels=384),
)
