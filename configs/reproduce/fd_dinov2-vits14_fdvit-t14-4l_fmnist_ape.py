# Ablation (appendix D): absolute position embeddings instead of the shared RPB; all else as the main run.
_base_ = './fd_dinov2-vits14_fdvit-t14-4l_fmnist.py'

model = dict(student=dict(pos_embed='ape'))
