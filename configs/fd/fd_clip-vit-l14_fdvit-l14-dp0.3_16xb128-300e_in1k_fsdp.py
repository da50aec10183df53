# FD-CLIP ViT-L/14 with sharded training: parameters, gradients and AdamW state of every student block are
# split across the processes (PyTorch FSDP2, ``fully_shard``, through fdclip_mm.CheckedFlexibleRunner); the frozen
# teacher is replicated. bf16 compute where the device runs it natively (MixedPrecisionPolicy, fp32 gradient
# reduction), fp32 elsewhere. Checkpoints are ordinary full ones written by rank 0 (converters, DDP runs and
# tools/test.py read them); a sharded run resumes from them.
#   bash tools/dist_train.sh configs/fd/fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k_fsdp.py 8 --auto-scale-lr
# Any other FD config shards the same way: copy these lines and change _base_ (e.g. the B/16 config).
_base_ = './fd_clip-vit-l14_fdvit-l14-dp0.3_16xb128-300e_in1k.py'

runner_type = 'fdclip_mm.CheckedFlexibleRunner'
strategy = dict(type='fdclip_mm.FSDP2Strategy', param_dtype='auto')
model_wrapper_cfg = None  # the strategy shards the model; the DDP wrapper of the base config does not apply
# FSDP2 casts in the units themselves (MixedPrecisionPolicy), so the plain wrapper replaces the base config's
# AmpOptimWrapper (autocast + loss scaling); constructor, AdamW, clipping and parameter groups stay as they are.
optim_wrapper = dict(
    _delete_=True,
    type='fdclip_mm.CheckedOptimWrapper',
    constructor={{_base_.optim_wrapper.constructor}},
    optimizer={{_base_.optim_wrapper.optimizer}},
    clip_grad={{_base_.optim_wrapper.clip_grad}},
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
