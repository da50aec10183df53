"""Engine-side support: safe resume, CPU distributed training and AMP, optimizer construction."""
from .atomic_checkpoint_hook import AtomicCheckpointHook, AtomicLocalBackend, atomic_write
from .attention_distance_hook import AttentionDistanceHook
from .best_metrics_hook import BestMetricsHook
from .checked_runner import CheckedRunner
from .checkpoint_globals import checkpoint_safe_globals, register_checkpoint_globals
from .config_options import merge_cfg_options, move_data_root
from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .distributed import (cpu_model_wrapper_cfg, destroy_cpu_process_group, init_cpu_process_group, is_cpu_only,
                          prepare_cpu_distributed)
from .guarded_ddp import GuardedDistributedDataParallel
from .layer_decay_optim_constructor import LayerDecayOptimWrapperConstructor
from .lr_schedulers import TimmCosineAnnealingLR, TimmLinearWarmupLR
from .rng_state_hook import RNGStateHook, get_rng_state, set_rng_state
from .trainable_optim_constructor import TrainableOptimWrapperConstructor

# Importing fdclip_mm (e.g. through a config's ``custom_imports``) is what makes resuming work.
register_checkpoint_globals()

__all__ = [
    'AtomicCheckpointHook', 'CheckedRunner', 'merge_cfg_options', 'move_data_root', 'AtomicLocalBackend', 'atomic_write', 'AttentionDistanceHook',
    'checkpoint_safe_globals', 'register_checkpoint_globals', 'CPUAmpOptimWrapper', 'cpu_model_wrapper_cfg',
    'destroy_cpu_process_group', 'GuardedDistributedDataParallel', 'init_cpu_process_group', 'is_cpu_only', 'prepare_cpu_distributed',
    'TrainableOptimWrapperConstructor', 'LayerDecayOptimWrapperConstructor', 'BestMetricsHook', 'RNGStateHook',
    'get_rng_state', 'set_rng_state', 'TimmCosineAnnealingLR', 'TimmLinearWarmupLR'
]
