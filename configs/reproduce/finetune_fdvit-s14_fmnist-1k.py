# Small-scale reproduction, matched architecture: the FDViT-S/14 student of fd_dinov2-vits14_fdvit-s14_fmnist.py
# fine-tuned with the 4-layer student's recipe (per-layer RPB, mean-pooled patch tokens, same head, data and
# schedule). As it is, the FD-S row (tools/model_converters/fd_to_classifier.py output); the scratch-S row:
# --cfg-options model.backbone.init_cfg=None.
_base_ = './finetune_fdvit-t14-4l_fmnist-1k.py'

model = dict(
    backbone=dict(
        arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
        init_cfg=dict(checkpoint='work_dirs/reproduce/weights/fd_matched_cls.pth'),
    ),
    head=dict(in_channels=384),
)
