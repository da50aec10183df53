# Fine-tuning the FD-DINO ViT-B/16 student (distilled 300 epochs from DINO ViT-B/16) on ImageNet-1K as the official
# fd_finetune__dino_vit_base__img224__300ep.yaml: 100 epochs (20 warm-up), drop path 0.2, layer decay 0.6, weight
# decay 0.05; its rates are per 512 images, scaled linearly: 1.5e-3 / 2.5e-7 / 2.5e-7 -> 6e-3 / 1e-6 / 1e-6 at 2048.
# The authors' fine-tuned model reaches 83.8% top-1; evaluate it here after converting their file:
#   python tools/model_converters/official_fd_to_mmpretrain.py RELEASED.pth data/weights/fd/fd-dino-vit-b16_in1k.pth
#   python tools/test.py configs/finetune_in1k/fd-dino-vit-b16_16xb128-100e_in1k.py \
#       data/weights/fd/fd-dino-vit-b16_in1k.pth
_base_ = './fd-clip-vit-b16_16xb128-100e_in1k.py'

distill_config = 'configs/fd/fd_dino-vit-b16_fdvit-b16-dp0.3_16xb128-300e_in1k.py'
base_lr = 6e-3

model = dict(backbone=dict(drop_path_rate=0.2, init_cfg=dict(checkpoint='data/weights/fd/fd-dino-vit-b16_cls.pth')))
optim_wrapper = dict(optimizer=dict(lr=base_lr))
# the base's warm-up start and floor: 1e-6 for every group, as ratios of this peak lr
_base_.param_scheduler[0].warmup_lr_ratio = 1e-6 / base_lr
_base_.param_scheduler[1].min_lr_ratio = 1e-6 / base_lr
