# Masked-input FD (appendix C, Table 2: "25% input + 200ep"): the 100-epoch masked config for 200 epochs.
_base_ = './fd_clip-vit-b16_fdvit-b16-mask75-dp0.1_16xb128-100e_in1k.py'

max_epochs = 200
_base_.param_scheduler[1].update(T_max=max_epochs - _base_.warmup_epochs, end=max_epochs)
train_cfg = dict(max_epochs=max_epochs)
