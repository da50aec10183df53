# UperNet + auxiliary FCN head on a ViT-B/16 as in mmseg's BEiT recipe (its configs/beit/), shared by the FD
# student and the CLIP baseline; each config sets its backbone (`_delete_=True`) and input statistics.
# Blocks 4, 6, 8 and 12 -> fdclip_mm.ViTPyramidNeck (x4, x2, x1, x0.5: strides 4, 8, 16, 32) -> UPerHead
# (768 channels); the auxiliary FCNHead (loss weight 0.4) reads the stride-16 level. Training crops are padded
# to 512 x 512; testing slides 512 x 512 windows with stride 341 (BEiT's ADE20K setting).
_base_ = 'mmseg::_base_/models/upernet_beit.py'

custom_imports = dict(imports=['fdclip_mm'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(size=(512, 512)),
    neck=dict(_delete_=True, type='fdclip_mm.ViTPyramidNeck', embed_dims=768, rescales=(4, 2, 1, 0.5)),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)),
)
