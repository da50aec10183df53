# ADE20K semantic segmentation with UperNet (512 x 512 crops, 160k iterations) on the FD-CLIP ViT-B/16
# student, with mmseg's BEiT recipe (../_base_/schedules/upernet_adamw_layer_decay_160k.py). The distilled
# shared relative position bias is copied into every layer and resized to the 32 x 32 patch grid on loading.
# The backbone file: the authors' released distilled FD-CLIP ViT-B/16 (configs/fd/metafile.yml, Converted From)
#   python tools/model_converters/official_fd_to_mmpretrain.py RELEASED.pth data/weights/fd/fd-clip-vit-b16_backbone.pth
# or a distillation run of ours:
#   python tools/model_converters/fd_to_backbone.py \
#       work_dirs/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k data/weights/fd/fd-clip-vit-b16_backbone.pth
#   bash tools/dist_train.sh configs/upernet_ade20k/upernet_fd-clip-vit-b16_8xb2-160k_ade20k-512x512.py 8
# ADE20K (ADEChallengeData2016) goes to data/ade/ as mmseg expects.
_base_ = [
    '../_base_/models/upernet_vit-b16.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw_layer_decay_160k.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='fdclip_mm.FDViT',
        arch='base',
        img_size=512,
        patch_size=16,
        pos_embed='rpb',
        layer_scale_init_value=0.1,
        drop_path_rate=0.1,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='data/weights/fd/fd-clip-vit-b16_backbone.pth'),
    ), )

train_dataloader = dict(batch_size=2)
