# FD with a DINO ViT-B/16 (dino_vitbase16_pretrain.pth), a teacher of the official code: as FD-DeiT beside it
# (FD-CLIP B/16's student and recipe, drop path 0.3 as in the official fd_pretrain__dino_vit_base__img224__300ep.yaml,
# a ViT-B/16 teacher file in timm's layout whose own final norm gives the target), with DINO's file.
_base_ = './fd_deit-vit-b16_fdvit-b16-dp0.3_16xb128-300e_in1k.py'

model = dict(teacher=dict(checkpoint='data/weights/dino/dino_vitbase16_pretrain.pth'))
