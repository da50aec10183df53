"""Run mmengine's Runner on machines without an accelerator.

mmengine 0.10.7 assumes a GPU (or NPU/MLU/MUSA) in two places that matter to us:

- ``init_dist`` (called by ``Runner.setup_env`` for ``launcher='pytorch' | 'slurm' | 'mpi'``) calls
  ``torch.cuda.set_device`` before ``init_process_group`` and so fails on a CPU-only machine, and the
  Runner's default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which CPU modules reject.
  :func:`prepare_cpu_distributed` initialises a ``gloo`` process group from the launcher's environment
  before the Runner is built (``Runner.setup_env`` skips ``init_dist`` when a group already exists) and
  sets ``model_wrapper_cfg`` so that DDP is built with ``device_ids=None``.
On a machine with an accelerator this does nothing: mmengine handles it.
(AMP on CPU: :mod:`fdclip_mm.engine.cpu_amp_optim_wrapper`.)
"""
import datetime
import gc
import os
import subprocess
from typing import Optional, Union

import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

DEFAULT_MASTER_PORT = '29500'
CPU_BACKENDS = ('gloo', 'mpi')

_owns_process_group = False  # whether init_cpu_process_group created the default group


def is_cpu_only() -> bool:
    """Whether mmengine would run on the CPU (no CUDA, NPU, MLU or MUSA device).

    Returns:
        bool: True on a CPU-only machine.
    """
    return get_device() == 'cpu'


def _set_env_from_slurm(port: Optional[int] = None) -> None:
    """Derive torch's env:// variables from Slurm's, the way mmengine's ``_init_dist_slurm`` does.

    ``MASTER_ADDR`` is kept when set, otherwise the first host of ``SLURM_NODELIST`` (via ``scontrol``)
    is used. The master port is ``port`` if given, else ``MASTER_PORT``, else 29500.

    Args:
        port: ``env_cfg.dist_cfg.port`` of the config, if any.
    """
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1').strip()
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', DEFAULT_MASTER_PORT)
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def _set_env_from_mpi() -> None:
    """Derive torch's env:// variables from Open MPI's, as mmengine's ``_init_dist_mpi`` does."""
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')
    os.environ.setdefault('MASTER_PORT', DEFAULT_MASTER_PORT)
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['LOCAL_RANK'] = os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0')


def init_cpu_process_group(launcher: str, dist_cfg: Optional[dict] = None) -> None:
    """Initialise the default process group for CPU training from the launcher's environment.

    Args:
        launcher: ``'pytorch'`` (torchrun: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``),
            ``'slurm'`` (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_NODELIST``) or ``'mpi'``
            (``OMPI_COMM_WORLD_*``).
        dist_cfg: ``env_cfg.dist_cfg`` of the config. Its ``backend`` is used when it is a CPU backend
            (``gloo`` or ``mpi``), otherwise ``gloo`` replaces it (configs usually say ``nccl``);
            ``timeout`` is in seconds; ``port`` is the master port for Slurm, as in mmengine;
            other keys go to ``init_process_group``.
    """
    kwargs = dict(dist_cfg or {})
    port = kwargs.pop('port', None)
    init_backend = kwargs.pop('init_backend', 'torch')
    if init_backend != 'torch':
        raise ValueError(f'CPU distributed training supports init_backend="torch" only, got {init_backend}')
    if launcher == 'slurm':
        _set_env_from_slurm(port)
    elif launcher == 'mpi':
        _set_env_from_mpi()
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    os.environ.setdefault('LOCAL_RANK', '0')

    backend = kwargs.pop('backend', 'gloo')
    if backend not in CPU_BACKENDS:
        backend = 'gloo'
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    global _owns_process_group
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)
    _owns_process_group = True


def destroy_cpu_process_group() -> None:
    """Wait for all ranks, then destroy the group made by :func:`init_cpu_process_group`.

    torch asks for ``destroy_process_group()`` before exit; a gloo group left alive at interpreter exit
    aborted one rank once here ("terminate called without an active exception", after a 2-rank
    ``tools/test.py`` had written its results, on a loaded machine), which torchrun reports as a failed
    job. The barrier keeps a rank from tearing down while another still communicates. Does nothing for a
    group created by someone else (e.g. mmengine's ``init_dist`` on GPU).

    ``destroy_process_group`` only unregisters the group: a DDP model still alive keeps it (its reducer holds a
    reference), and the group is then destroyed during interpreter finalization, where gloo's worker threads
    releasing tensors abort the process the same way (seen once more after a finished 2-rank training run).
    Callers drop their runner first; the garbage collection here frees what cycles still hold.
    """
    global _owns_process_group
    if not (_owns_process_group and torch_dist.is_initialized()):
        return
    gc.collect()
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    _owns_process_group = False


def cpu_model_wrapper_cfg(cfg: Union[Config, ConfigDict]) -> dict:
    """Return ``model_wrapper_cfg`` with ``device_ids=None`` for a DDP-type wrapper.

    Without ``model_wrapper_cfg`` the Runner builds ``MMDistributedDataParallel(device_ids=[LOCAL_RANK],
    broadcast_buffers=False, find_unused_parameters=cfg.find_unused_parameters)``; this returns the same
    with ``device_ids=None``. A user's ``model_wrapper_cfg`` keeps all its keys; only ``device_ids`` is set
    to None, and only when the wrapper is a ``DistributedDataParallel`` (the Runner adds
    ``device_ids=[LOCAL_RANK]`` to those, and values in the config take precedence over its defaults).

    Args:
        cfg: The whole config.

    Returns:
        dict: The new ``model_wrapper_cfg``.
    """
    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        return dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg = dict(wrapper_cfg)
    wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
    wrapper_type = wrapper_cfg['type']
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper_cfg['device_ids'] = None
    elif wrapper_type is None:
        print_log(
            f'model_wrapper_cfg type {wrapper_cfg["type"]!r} is not registered yet; if it is a '
            'DistributedDataParallel, set device_ids=None in the config for CPU training.',
            logger='current')
    return wrapper_cfg


def prepare_cpu_distributed(cfg: Union[Config, ConfigDict], launcher: str) -> bool:
    """Prepare distributed training or testing on CPU before the Runner is built.

    On a CPU-only machine with ``launcher != 'none'``: initialise the default process group (``gloo``)
    unless one exists, and set ``cfg.model_wrapper_cfg`` so that DDP wraps the model with
    ``device_ids=None``. Anywhere else, do nothing.

    Args:
        cfg: The config the Runner will be built from; modified in place.
        launcher: The ``--launcher`` of the tool.

    Returns:
        bool: Whether anything was done.
    """
    if launcher == 'none' or not is_cpu_only():
        return False
    if not torch_dist.is_initialized():
        env_cfg = cfg.get('env_cfg') or {}
        init_cpu_process_group(launcher, env_cfg.get('dist_cfg'))
    cfg.model_wrapper_cfg = cpu_model_wrapper_cfg(cfg)
    return True
