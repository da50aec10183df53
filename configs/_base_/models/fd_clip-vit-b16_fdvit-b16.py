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
        final_norm=True,
    ),
    # OpenAI's file as published (a TorchScript archive, read without running its pickled code) into mmpretrain's
    # VisionTransformer in CLIP form (family 'clip': ln_pre, LayerNorm eps 1e-5, QuickGELU, CLIP's statistics,
    # the 'clip' reader; fdclip_mm/models/teachers/families.py); the target is every token after ln_post
    # (final_norm), class token first.
    teacher=dict(
        type='BackboneTeacher',
        family='clip',
        backbone=dict(arch='b', img_size=224, patch_size=16),
        checkpoint='data/weights/clip/ViT-B-16.pt',
        dtype='auto',  # bf16 where the device runs it natively, else fp32 (fdclip_mm.precision)
    ),
    loss=dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
    target_norm='ln',
)

# The frozen teacher has no buffers to broadcast and every trained parameter gets a gradient in every step.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
