# NYUv2 depth model of FD's appendix H: mmseg's DepthEstimator (ours adds the two-window test) on the distilled
# FDViT-B/16 with the GLP-style decoder of "Revealing the Dark Secrets of MIM" (SwinTransformer/
# MIM-Depth-Estimation, models/model.py): 3 deconvolutions of 32 filters (kernel 2, BN + ReLU), conv, sigmoid x
# max depth 10 m, SiLog loss (lambda 0.5).
# - The decoder reads one map, as the original reads Swin's last stage: here the last block at stride 16 (a
#   ViT has no stride-32 stage; a pyramid neck would compute three levels nobody reads). out_indices keeps the
#   (3, 5, 7, 11) of the other dense tasks; in_index=3 picks block 12.
# - final_norm=True: the head reads the last block, and the backbone file of
#   tools/model_converters/fd_to_backbone.py carries the student's final norm (ln1), so it loads with no
#   missing and no unexpected key.
# - Per-layer RPB initialised from the distilled shared table and resized to the 30 x 30 grid of 480-px crops by
#   FDViT's load hook. Input statistics: ImageNet's (the student's).
model = dict(
    type='fdclip_mm.TwoWindowDepthEstimator',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=0,  # padded depth = 0 = invalid for SiLogLoss and DepthMetric
        size=(480, 480)),
    backbone=dict(
        type='fdclip_mm.FDViT',
        arch='base',
        img_size=(480, 480),
        patch_size=16,
        pos_embed='rpb',
        layer_scale_init_value=0.1,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=True,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-clip-vit-b16_backbone.pth')),
    decode_head=dict(
        type='fdclip_mm.GLPDepthHead',
        in_channels=[768] * 4,
        in_index=3,
        feature_stride=16,
        channels=96,  # the original's 1/8 of its input width (Swin-B: 1024 -> 128)
        num_deconv=3,
        num_filters=(32, 32, 32),
        max_depth=10.0,
        loss_decode=dict(type='SiLogLoss')),
    train_cfg=dict(),
    # Two 480 x 480 windows at the left and right ends of a 640 x 480 frame, each also predicted flipped.
    test_cfg=dict(mode='two_window', crop_size=(480, 480), flip=True))
