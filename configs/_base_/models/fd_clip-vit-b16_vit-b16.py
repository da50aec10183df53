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
    teacher=dict(
        type='CLIPTeacher',
        checkpoint='data/weights/clip/ViT-B-16.pt',  # OpenAI's file as published (TorchScript archive)
        quick_gelu=True,
        dtype='auto',  # bf16 where the device runs it natively, else fp32 (fdclip_mm.precision)
    ),
    loss=dict(type='FeatureDistillLoss', loss_type='smooth_l1', beta=2.0),
    target_norm='ln',
)

# DDP whose step lets the distiller skip a non-finite loss on every rank alike (model.nonfinite_loss='skip').
model_wrapper_cfg = dict(type='fdclip_mm.GuardedDistributedDataParallel', broadcast_buffers=False,
                         find_unused_parameters=False)
