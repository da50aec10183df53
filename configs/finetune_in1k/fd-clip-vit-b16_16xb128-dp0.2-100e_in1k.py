# Table 5, ViT-B/16 with drop path 0.2 (the table's grid: {0.1, 0.2, 0.3}); all else as the 300-epoch student's
# default (layer decay 0.6, drop path 0.3 there).
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

model = dict(backbone=dict(drop_path_rate=0.2))
