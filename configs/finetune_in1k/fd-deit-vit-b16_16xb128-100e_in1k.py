# Fine-tuning the FD-DeiT ViT-B/16 student (distilled 300 epochs from DeiT ViT-B/16) on ImageNet-1K as the official
# fd_finetune__deit_vit_base__img224__300ep.yaml: 100 epochs (20 warm-up), drop path 0.3, layer decay 0.65, weight
# decay 0.05; its rates are per 512 images, scaled linearly: 1.25e-3 / 2.5e-7 / 2.5e-7 -> 5e-3 / 1e-6 / 1e-6 at 2048
# (the schedule base's). The authors' fine-tuned model reaches 83.0% top-1; evaluate it here after converting it:
#   python tools/model_converters/official_fd_to_mmpretrain.py RELEASED.pth data/weights/fd/fd-deit-vit-b16_in1k.pth
#   python tools/test.py configs/finetune_in1k/fd-deit-vit-b16_16xb128-100e_in1k.py \
#       data/weights/fd/fd-deit-vit-b16_in1k.pth
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

distill_config = 'configs/fd/fd_deit-vit-b16_fdvit-b16-dp0.3_16xb128-300e_in1k.py'

model = dict(backbone=dict(init_cfg=dict(checkpoint='data/weights/fd/fd-deit-vit-b16_cls.pth')))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.65))
