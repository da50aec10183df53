# FD-CLIP into a smaller student: OpenAI CLIP ViT-B/16 (768 channels) -> FDViT-S/16 (384 channels, 12 layers,
# 6 heads, shared RPB), Table 4's recipe otherwise. Same 14 x 14 grid and both have a class token, so the loss is
# the paper's, with a 384 -> 768 projector; drop path 0.1, a smaller student's (our choice: the paper distils
# into B and L only).
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(student=dict(arch='small', drop_path_rate=0.1))
