# FD-CLIP into a Swin-T student (official FD issue #10): OpenAI CLIP ViT-B/16 -> mmpretrain SwinTransformer 'tiny'
# (window 7, 28M parameters), Table 4's recipe otherwise. The student's last stage is a 7 x 7 map of 768 channels
# (stride 32) and the teacher's patch tokens a 14 x 14 map (stride 16): each target token is the mean of the 2 x 2
# teacher tokens its cell covers (FeatureDistiller's grid alignment), whitened afterwards; the teacher's class
# token is left out, as the student has none. The distilled student converts to mmdet's / mmseg's Swin with
#   python tools/model_converters/fd_to_backbone.py work_dirs/fd_swin-t fd_swin-t.pth --out-indices 0 1 2 3
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(
    student=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='tiny',
        img_size=224,
        window_size=7,
        drop_path_rate=0.1,
        out_indices=(3, ),
    ))
# Swin's own exemptions (its official code's no_weight_decay): position tables and the absolute embedding.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.0),
        'relative_position_bias_table': dict(decay_mult=0.0),
    }))
