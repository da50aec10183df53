"""Engine-side support: resuming Runner checkpoints under ``weights_only=True``, CPU distributed / AMP."""
from .checkpoint_globals import checkpoint_safe_globals, register_checkpoint_globals
from .distributed import (CPUAmpOptimWrapper, cpu_model_wrapper_cfg, destroy_cpu_process_group,
                          init_cpu_process_group, is_cpu_only, prepare_cpu_distributed)

# Importing fdclip_mm (e.g. through a config's ``custom_imports``) is what makes resuming work.
register_checkpoint_globals()

__all__ = [
    'checkpoint_safe_globals', 'register_checkpoint_globals', 'CPUAmpOptimWrapper', 'cpu_model_wrapper_cfg',
    'destroy_cpu_process_group', 'init_cpu_process_group', 'is_cpu_only', 'prepare_cpu_distributed'
]
