# Position-encoding ablation (appendix D): the student uses absolute position embeddings instead of the shared RPB of
# the default config. Compare attention distances with tools/analysis and fine-tuning accuracy with the default.
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'

model = dict(student=dict(pos_embed='ape'))
