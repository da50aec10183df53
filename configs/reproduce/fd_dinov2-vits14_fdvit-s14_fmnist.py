# Small-scale reproduction, matched architecture (the paper's title claim): the real DINOv2 ViT-S/14 distilled into
# an FDViT of its own size (12 layers, width 384, 6 heads, patch 14; shared RPB as the paper's students), with the
# same data, teacher-target cache and recipe as the 4-layer student (10 epochs of 10,000 images at 56 px).
# tools/reproduce.py sets the student's arch to the teacher file's (--cfg-options model.student.arch.*).
_base_ = './fd_dinov2-vits14_fdvit-t14-4l_fmnist.py'

model = dict(student=dict(arch=dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)))
