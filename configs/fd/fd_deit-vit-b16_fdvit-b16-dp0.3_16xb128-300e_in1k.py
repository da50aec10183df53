# FD with a DeiT-B/16 (deit_base_patch16_224-b5f2ef4d.pth), a teacher of the official code.
# Same student and recipe as FD-CLIP B/16 (Table 4) except drop path 0.3, as in the official
# fd_pretrain__deit_vit_base__img224__300ep.yaml; the teacher's own final norm gives the target and the data
# preprocessor normalises the teacher's input with its ImageNet statistics.
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(
    student=dict(drop_path_rate=0.3),
    teacher=dict(
        _delete_=True,
        type='BackboneTeacher',
        family='timm_vit',  # the published file in timm's layout; its classifier / decoder are not read
        backbone=dict(arch='b', img_size=224, patch_size=16),
        checkpoint='data/weights/deit/deit_base_patch16_224-b5f2ef4d.pth',
    ))
