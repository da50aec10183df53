# Two teachers into one ViT-B/16 (as RADIO / Theia / UNIC distil several foundation models): OpenAI CLIP ViT-B/16
# and DINO ViT-B/16, each with its own 768 -> 768 projector, whitening and SmoothL1 loss (weight 1 each), each
# given the crop normalised with its own statistics. The logs show loss_clip and loss_dino; the total is their sum.
# Student and recipe of FD-CLIP B/16 (Table 4). Not a setting of the paper.
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

_clip_teacher = {{_base_.model.teacher}}
model = dict(
    teacher=None,
    teachers=[
        dict(name='clip', loss_weight=1.0, teacher=_clip_teacher),
        dict(
            name='dino',
            loss_weight=1.0,
            teacher=dict(
                type='BackboneTeacher',
                family='timm_vit',
                backbone=dict(arch='b', img_size=224, patch_size=16),
                checkpoint='data/weights/dino/dino_vitbase16_pretrain.pth',
                dtype='auto',
            )),
    ],
)
