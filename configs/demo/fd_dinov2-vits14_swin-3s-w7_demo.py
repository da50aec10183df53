# A Swin student on CPU, on the demo's real data: the pretrained DINOv2 ViT-S/14 teacher (scripts/fetch_demo_data.py)
# distilled into a small mmpretrain SwinTransformer (3 stages, widths 48/96/192, window 7, 1.3M parameters).
# At 112 px the teacher makes an 8 x 8 grid of 384-channel tokens (patch 14) and the student's last stage a 7 x 7
# map (stride 16): each target token is the average of the teacher tokens its cell covers, and the teacher's
# class token is left out (the student has none). Same photos, crops and schedule as the ViT demo beside it.
#   python tools/train.py configs/demo/fd_dinov2-vits14_swin-3s-w7_demo.py --work-dir work_dirs/demo_swin
_base_ = './fd_dinov2-vits14_fdvit-t14-6l_demo.py'

img_size = 112
model = dict(
    student=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch=dict(embed_dims=48, depths=[2, 2, 2], num_heads=[2, 4, 8]),
        img_size=img_size,
        window_size=7,
        drop_path_rate=0.1,
        out_indices=(2, ),
    ))
work_dir = 'work_dirs/demo_swin'
