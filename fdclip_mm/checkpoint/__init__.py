"""Checkpoint files, one home below everything else of ours (of fdclip_mm it imports only the registry): safe
reading with errors that name the file, TorchScript archives read without running their code, a teacher's file
read by its family's reader, the allow-list that lets Runner checkpoints load with ``weights_only=True``, exact
loading and mmengine's key revision."""
from .exact_loading import CheckpointMismatchError, load_state_dict_exactly, revise_keys
from .files import (STATE_DICT_KEYS, CheckpointFileError, describe_read_error, is_torchscript_archive, read_checkpoint,
                    read_state_dict)
from .finite_weights import NonFiniteWeightsError, refuse_nonfinite_weights
from .last_checkpoint import POINTER_FILE, read_last_checkpoint
from .official_fd_files import OfficialFDCheckpoint, read_official_fd_checkpoint
from .safe_globals import checkpoint_safe_globals, register_checkpoint_globals
from .teacher_files import read_teacher_checkpoint
from .torchscript_archive import read_torchscript_tensors

__all__ = [
    'checkpoint_safe_globals', 'CheckpointFileError', 'CheckpointMismatchError', 'describe_read_error',
    'is_torchscript_archive', 'load_state_dict_exactly', 'NonFiniteWeightsError', 'OfficialFDCheckpoint',
    'POINTER_FILE', 'read_checkpoint', 'read_last_checkpoint', 'read_official_fd_checkpoint', 'read_state_dict',
    'read_teacher_checkpoint', 'read_torchscript_tensors', 'refuse_nonfinite_weights', 'register_checkpoint_globals',
    'revise_keys', 'STATE_DICT_KEYS'
]
