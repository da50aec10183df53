# FD-CLIP ViT-L/14: OpenAI CLIP ViT-L/14 -> ViT-L/14 (257 tokens at 224), drop path 0.3, 300 epochs (Table 4).
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(
    student=dict(arch='large', patch_size=14, drop_path_rate=0.3),
    teacher=dict(backbone=dict(arch='l', patch_size=14), checkpoint='data/weights/clip/ViT-L-14.pt'),
)
