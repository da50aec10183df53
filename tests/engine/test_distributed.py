"""CPU distributed support (gloo process group, DDP with ``device_ids=None``) and CPU AMP."""
import os
import os.path as osp
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper

from fdclip_mm.engine import CPUAmpOptimWrapper, cpu_model_wrapper_cfg, destroy_cpu_process_group
from fdclip_mm.engine import distributed as fd_dist
from fdclip_mm.engine import prepare_cpu_distributed
from ..helpers.tools import DIST_ENV_VARS, cpu_only, free_port, tool_env


def fake_scontrol(bin_dir) -> str:
    """A ``scontrol`` that answers ``scontrol show hostname LIST`` with 127.0.0.1."""
    path = osp.join(bin_dir, 'scontrol')
    with open(path, 'w') as f:
        f.write('#!/bin/sh\necho 127.0.0.1\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return str(bin_dir)


# --------------------------------------------------------------------------- model_wrapper_cfg


def test_default_wrapper_cfg_mirrors_runner_default():
    cfg = Config(dict(find_unused_parameters=True))
    assert cpu_model_wrapper_cfg(cfg) == dict(
        type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False, find_unused_parameters=True)


def test_user_wrapper_cfg_keeps_keys():
    cfg = Config(
        dict(
            model_wrapper_cfg=dict(
                broadcast_buffers=True, find_unused_parameters=True, device_ids=[0], static_graph=True)))
    assert cpu_model_wrapper_cfg(cfg) == dict(
        type='MMDistributedDataParallel',
        device_ids=None,
        broadcast_buffers=True,
        find_unused_parameters=True,
        static_graph=True)
    cfg = Config(dict(model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel')))
    assert cpu_model_wrapper_cfg(cfg) == dict(type='MMSeparateDistributedDataParallel', device_ids=None)


def test_non_ddp_wrapper_gets_no_device_ids():
    cfg = Config(dict(model_wrapper_cfg=dict(type='MMFullyShardedDataParallel', use_orig_params=True)))
    assert cpu_model_wrapper_cfg(cfg) == dict(type='MMFullyShardedDataParallel', use_orig_params=True)


def test_prepare_does_nothing_without_launcher():
    cfg = Config(dict(model=dict(type='X')))
    assert prepare_cpu_distributed(cfg, 'none') is False
    assert 'model_wrapper_cfg' not in cfg
    assert not torch.distributed.is_initialized()
    destroy_cpu_process_group()  # no group: nothing to do


# --------------------------------------------------------------------------- launcher environments


def test_slurm_env(monkeypatch, tmp_path):
    for key in DIST_ENV_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('PATH', fake_scontrol(tmp_path) + os.pathsep + os.environ['PATH'])
    monkeypatch.setenv('SLURM_PROCID', '3')
    monkeypatch.setenv('SLURM_NTASKS', '4')
    monkeypatch.setenv('SLURM_LOCALID', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1-2]')
    fd_dist._set_env_from_slurm()
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['LOCAL_RANK']) == ('3', '4', '1')
    assert (os.environ['MASTER_ADDR'], os.environ['MASTER_PORT']) == ('127.0.0.1', '29500')
    # MASTER_ADDR / MASTER_PORT from the environment win, as in mmengine
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.7')
    monkeypatch.setenv('MASTER_PORT', '12345')
    fd_dist._set_env_from_slurm()
    assert (os.environ['MASTER_ADDR'], os.environ['MASTER_PORT']) == ('10.0.0.7', '12345')
    fd_dist._set_env_from_slurm(port=23456)  # env_cfg.dist_cfg.port beats MASTER_PORT
    assert os.environ['MASTER_PORT'] == '23456'


def test_mpi_env(monkeypatch):
    for key in DIST_ENV_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '2')
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '3')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_RANK', '0')
    with pytest.raises(KeyError, match='MASTER_ADDR'):
        fd_dist._set_env_from_mpi()
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    fd_dist._set_env_from_mpi()
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['LOCAL_RANK']) == ('2', '3', '0')
    assert os.environ['MASTER_PORT'] == '29500'


def test_invalid_launcher_or_init_backend():
    with pytest.raises(ValueError, match='Invalid launcher'):
        fd_dist.init_cpu_process_group('ssh')
    with pytest.raises(ValueError, match='init_backend'):
        fd_dist.init_cpu_process_group('pytorch', dict(init_backend='deepspeed'))


@pytest.mark.slow
@cpu_only
def test_cpu_process_group_and_runner(tmp_path):
    """One fresh interpreter (a process group can only be initialised once per process).

    torchrun-style env: a gloo group replaces the config's nccl and a second call changes nothing. Then a
    Slurm env (scontrol faked): the Runner skips init_dist, wraps with DDP(device_ids=None) and trains.
    """
    code = textwrap.dedent("""
        import os
        import torch.distributed as dist
        from mmengine.config import Config
        from mmengine.model import MMDistributedDataParallel
        from mmengine.runner import Runner
        import toy_modules
        from fdclip_mm.engine import destroy_cpu_process_group, prepare_cpu_distributed

        cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60))))
        assert prepare_cpu_distributed(cfg, 'pytorch')
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
        group = dist.group.WORLD
        assert prepare_cpu_distributed(cfg, 'pytorch') and dist.group.WORLD is group
        assert cfg.model_wrapper_cfg.device_ids is None
        destroy_cpu_process_group()
        assert not dist.is_initialized()

        for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR'):
            os.environ.pop(key)
        os.environ.update(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_NODELIST='fake-node')
        cfg = Config.fromfile(toy_modules.write_toy_config('toy.py', max_iters=2))
        cfg.work_dir = 'work'
        cfg.launcher = 'slurm'
        assert prepare_cpu_distributed(cfg, cfg.launcher)
        assert (os.environ['MASTER_ADDR'], os.environ['RANK']) == ('127.0.0.1', '0')
        runner = Runner.from_cfg(cfg)
        assert isinstance(runner.model, MMDistributedDataParallel), type(runner.model)
        assert runner.model.device_ids is None and runner.distributed
        runner.train()
        assert dist.get_backend() == 'gloo'
        destroy_cpu_process_group()
        assert not dist.is_initialized()
        print('OK')
    """)
    env = tool_env(repo_on_path=True, RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
    env['PATH'] = fake_scontrol(tmp_path) + os.pathsep + env['PATH']
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=tmp_path,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.stdout.strip().endswith('OK'), proc.stdout[-2000:] + proc.stderr[-3000:]
    assert osp.exists(tmp_path / 'work' / 'iter_2.pth')


# --------------------------------------------------------------------------- CPU AMP


@cpu_only
def test_mmengine_amp_wrapper_refuses_cpu():
    """The reason CPUAmpOptimWrapper exists."""
    model = nn.Linear(2, 2)
    with pytest.raises(AssertionError):
        AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


@cpu_only
def test_cpu_amp_wrapper_autocasts_to_bfloat16():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    wrapper = CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dtype='bfloat16')
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
        assert torch.is_autocast_enabled('cpu')
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)
    state = wrapper.state_dict()
    assert 'loss_scaler' in state
    wrapper.load_state_dict(state)


def test_cpu_amp_wrapper_refuses_float16():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match='bfloat16'):
        CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dtype='float16')


def test_cpu_amp_wrapper_is_registered():
    from mmengine.registry import OPTIM_WRAPPERS
    assert OPTIM_WRAPPERS.get('fdclip_mm.CPUAmpOptimWrapper') is CPUAmpOptimWrapper
