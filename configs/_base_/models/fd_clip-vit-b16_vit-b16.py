# Feature distillation of OpenAI CLIP ViT-B/16 into a BEiT-style ViT-B/16 with a shared RPB (Table 4).
model = dict(
    type='fdclip_mm.FeatureDistiller',
    student=dict(
        type='FDViT',
        arch='base',
        img_size=224,
        patch_size=16,
        pos_embed='shared_rpb',
        layer_scale_init_value=0.1,
        drop_path_rate=0.2,
        out_type='raw',
        final_norm=True,
    ),
    # OpenAI's file as published (a TorchScript archive, read without running its pickled code) into mmpretrain's
    # VisionTransformer in CLIP form: ln_pre (pre_norm, no patch bias), LayerNorm eps 1e-5, QuickGELU; the target
    # is every token after ln_post (final_norm), class token first.
    teacher=dict(
        type='BackboneTeacher',
        backbone=dict(
            type='mmpretrain.VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            pre_norm=True,
            norm_cfg=dict(type='LN', eps=1e-5),
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')),
            final_norm=True,
            out_type='raw',
        ),
        checkpoint='data/weights/clip/ViT-B-16.pt',
        reader='clip',
        mean=(122.7709383, 116.7460125, 104.09373615),  # CLIP's statistics on the 0-255 scale
        std=(68.5005327, 66.6321579, 70.32316305),
        dtype='auto',  # bf16 where the device runs it natively, else fp32 (fdclip_mm.precision)
    ),
    loss=dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
    target_norm='ln',
)

# DDP whose step lets the distiller skip a non-finite loss on every rank alike (model.nonfinite_loss='skip').
model_wrapper_cfg = dict(type='fdclip_mm.GuardedDistributedDataParallel', broadcast_buffers=False,
                         find_unused_parameters=False)
