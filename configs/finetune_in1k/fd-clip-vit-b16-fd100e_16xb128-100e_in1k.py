# Fine-tuning the 100-epoch FD-CLIP ViT-B/16 student (the "Full input + 100ep" distillation) with the official
# fd_finetune__clip_vit_base__img224__100ep.yaml: Table 5's recipe with layer decay 0.65 and drop path 0.1.
#   python tools/model_converters/fd_to_classifier.py work_dirs/fd_100e data/weights/fd/fd-clip-vit-b16-100e_cls.pth
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

distill_config = 'configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.1_16xb128-100e_in1k.py'

model = dict(
    backbone=dict(drop_path_rate=0.1, init_cfg=dict(checkpoint='data/weights/fd/fd-clip-vit-b16-100e_cls.pth')))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.65))
