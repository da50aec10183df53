# FD with a MAE ViT-B/16 (appendix B, FD-MAE): the pre-trained encoder of mae_pretrain_vit_base.pth.
# Same student and recipe as FD-CLIP B/16 (Table 4); the teacher's own final norm gives the target and the
# data preprocessor normalises the teacher's input with its ImageNet statistics.
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(
    teacher=dict(
        _delete_=True,
        type='BackboneTeacher',
        family='timm_vit',  # the published file in timm's layout; its classifier / decoder are not read
        backbone=dict(arch='b', img_size=224, patch_size=16),
        checkpoint='data/weights/mae/mae_pretrain_vit_base.pth',
    ))
