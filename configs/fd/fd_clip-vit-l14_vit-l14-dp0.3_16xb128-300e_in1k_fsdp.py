# FD-CLIP ViT-L/14 with sharded training: parameters, gradients and AdamW state of every transformer block are
# split across the GPUs (PyTorch FSDP through mmengine's FlexibleRunner), bf16 autocast with a sharded scaler.
#   bash tools/dist_train.sh configs/fd/fd_clip-vit-l14_vit-l14-dp0.3_16xb128-300e_in1k_fsdp.py 8 --auto-scale-lr
# GPU only: mmengine's FSDPStrategy wraps with FSDP1, which in torch 2.14 stops with "FSDP needs a non-CPU
# accelerator device" on a CPU-only machine; use the plain L/14 config (DDP) there.
_base_ = './fd_clip-vit-l14_vit-l14-dp0.3_16xb128-300e_in1k.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        # one FSDP unit per transformer block (about 12.6M parameters each in the student and the teacher)
        auto_wrap_policy=dict(type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
                              min_num_params=int(1e7)),
        use_orig_params=True,  # the frozen teacher and the trained student live in one wrapped model
    ),
    state_dict_cfg='full',  # rank 0 writes ordinary checkpoints that the converters and DDP runs read
)
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', use_fsdp=True)
model_wrapper_cfg = None  # the strategy wraps the model; the DDP wrapper of the base config does not apply
