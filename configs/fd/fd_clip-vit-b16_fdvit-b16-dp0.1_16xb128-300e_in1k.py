# FD-CLIP ViT-B/16, 300 epochs, student drop path 0.1 (Table 4 lists {0.1, 0.2, 0.3}).
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(student=dict(drop_path_rate=0.1))
