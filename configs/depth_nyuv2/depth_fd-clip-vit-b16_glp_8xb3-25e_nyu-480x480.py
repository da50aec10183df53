# FD-CLIP ViT-B/16 on NYUv2 depth (FD appendix H): GLP-style head, 480 x 480 crops, two-window (+ flip) test.
# Init checkpoint: data/weights/fd/fd-clip-vit-b16_backbone.pth, the authors' released distilled FD-CLIP ViT-B/16
# (configs/fd/metafile.yml, Converted From) through
#   python tools/model_converters/official_fd_to_mmpretrain.py RELEASED.pth data/weights/fd/fd-clip-vit-b16_backbone.pth
# or written from a distillation run of ours by
#   python tools/model_converters/fd_to_backbone.py work_dirs/fd_clip-vit-b16 \
#       data/weights/fd/fd-clip-vit-b16_backbone.pth
# Data: NYUv2 in data/nyu (mmseg's tools/dataset_converters/nyu.py). Train (8 GPUs x 3), then test:
#   bash tools/dist_train.sh configs/depth_nyuv2/depth_fd-clip-vit-b16_glp_8xb3-25e_nyu-480x480.py 8
#   bash tools/dist_test.sh configs/depth_nyuv2/depth_fd-clip-vit-b16_glp_8xb3-25e_nyu-480x480.py \
#       WORK_DIR/best_rmse_iter_*.pth 8
_base_ = ['../_base_/models/depth_glp_fdvit-b16.py', '../_base_/schedules/depth_glp_adamw_8xb3-25e_nyu.py']
