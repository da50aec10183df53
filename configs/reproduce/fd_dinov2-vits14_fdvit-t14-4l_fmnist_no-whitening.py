# Ablation: the teacher's tokens regressed as they are (no whitening LayerNorm); all else as the main run.
_base_ = './fd_dinov2-vits14_fdvit-t14-4l_fmnist.py'

model = dict(target_norm=None)
