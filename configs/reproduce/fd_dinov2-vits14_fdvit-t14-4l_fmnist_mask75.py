# Ablation (appendix C): the student sees a random 25% of the patches (4 of 16), the loss is on those; the
# teacher's targets are those of the full image. Same epochs as the main run.
_base_ = './fd_dinov2-vits14_fdvit-t14-4l_fmnist.py'

model = dict(mask_ratio=0.75)
