# ADE20K UperNet (512 x 512 crops, 160k iterations) on the FD-CLIP Swin-T student
# (configs/fd/fd_clip-vit-b16_swin-t-dp0.1_16xb128-300e_in1k.py): mmseg's own SwinTransformer and its Swin-T UperNet
# model (stages 1-4 -> UPerHead, auxiliary FCN on stage 3), with the schedule of the FD ViT-B/16 config beside it
# (mmseg's BEiT recipe: AdamW lr 3e-5, layer decay 0.9 by mmpretrain's Swin depth rule), so that students compare
# on one recipe; position tables are not weight-decayed, as in mmseg's Swin recipes.
#   python tools/model_converters/fd_to_backbone.py work_dirs/fd_clip-vit-b16_swin-t-dp0.1_16xb128-300e_in1k \
#       data/weights/fd/fd-clip-swin-t_backbone.pth --out-indices 0 1 2 3
#   bash tools/dist_train.sh configs/upernet_ade20k/upernet_fd-clip-swin-t_8xb2-160k_ade20k-512x512.py 8
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw_layer_decay_160k.py',
]
custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(size=(512, 512)),  # ImageNet statistics: the student's
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-clip-swin-t_backbone.pth'), ),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.),
    }))

train_dataloader = dict(batch_size=2)
