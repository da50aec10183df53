"""Engine-side support: safe resume, CPU distributed training and AMP, optimizer construction."""
from .atomic_checkpoint_hook import AtomicCheckpointHook, AtomicLocalBackend, atomic_write
from .attention_distance_hook import AttentionDistanceHook
from .best_metrics_hook import BestMetricsHook
from .block_compile import BlockCompileHook, compile_blocks, repeated_blocks
from .checked_runner import CheckedFlexibleRunner, CheckedRunner, build_checked_runner
from .config_options import merge_cfg_options, move_data_root
from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .distributed import (cpu_model_wrapper_cfg, destroy_cpu_process_group, init_cpu_process_group, is_cpu_only,
                          prepare_cpu_distributed)
from .fsdp2_strategy import DistributedLaunchRequired, FSDP2Strategy
from .layer_decay_optim_constructor import LayerDecayOptimWrapperConstructor
from .loader_report_hook import LoaderReportHook
from .lr_schedulers import TimmCosineAnnealingLR, TimmLinearWarmupLR
from .nonfinite_loss import CheckedAmpOptimWrapper, CheckedOptimWrapper
from .refusals import RunRefused
from .rng_state_hook import RNGStateHook, get_rng_state, set_rng_state
from .run_files import move_earlier_run_aside, refuse_to_replace_run
from .target_cache_check_hook import TargetCacheCheckHook
from .trainable_optim_constructor import TrainableOptimWrapperConstructor
from .work_dir_lock import WorkDirInUseError, lock_work_dir, release_work_dir

__all__ = [
    'atomic_write', 'AtomicCheckpointHook', 'AtomicLocalBackend', 'AttentionDistanceHook', 'BestMetricsHook',
    'BlockCompileHook', 'build_checked_runner', 'CheckedAmpOptimWrapper', 'CheckedFlexibleRunner',
    'CheckedOptimWrapper', 'CheckedRunner', 'compile_blocks', 'cpu_model_wrapper_cfg', 'CPUAmpOptimWrapper',
    'destroy_cpu_process_group', 'DistributedLaunchRequired', 'FSDP2Strategy', 'get_rng_state',
    'init_cpu_process_group', 'is_cpu_only', 'LayerDecayOptimWrapperConstructor', 'LoaderReportHook', 'lock_work_dir',
    'merge_cfg_options', 'move_data_root', 'move_earlier_run_aside', 'prepare_cpu_distributed', 'refuse_to_replace_run',
    'release_work_dir', 'repeated_blocks', 'RNGStateHook', 'RunRefused', 'set_rng_state', 'TargetCacheCheckHook',
    'TimmCosineAnnealingLR', 'TimmLinearWarmupLR', 'TrainableOptimWrapperConstructor', 'WorkDirInUseError'
]
