# Masked-input FD (appendix C, Table 2: "25% input + 100ep"): the student encodes a random 25% of the patch
# tokens (MAE-style dropping, no mask token), the teacher sees the whole crop, the loss is on the kept tokens.
# The supplement lists no other change; we keep the 100-epoch full-input recipe (drop path 0.1, crop 0.67-1).
_base_ = './fd_clip-vit-b16_fdvit-b16-dp0.1_16xb128-100e_in1k.py'

model = dict(mask_ratio=0.75)
