"""FSDP2Strategy on 2 CPU processes (gloo): equal to DDP, half the state per rank, exact resume after kill -9."""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from fdclip_mm.converters import convert_fd_checkpoint
from fdclip_mm.converters.to_classifier import convert_fd_to_classifier
from fdclip_mm.engine import is_cpu_only
from fdclip_mm.engine.fsdp2_strategy import (mixed_precision_policy, optimizer_state_to_indices,
                                             optimizer_state_to_names, shard_units)
from fdclip_mm.models.backbones import FDViT
from ..helpers.config_lists import REPO
from ..helpers.processes import kill_tree
from ..helpers.tiny_fd_configs import TINY_ARCH, shrink
from ..helpers.tools import TOOLS, call, free_port, run, tool_env

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): runs is built once
pytestmark = pytest.mark.xdist_group('test_fsdp2_strategy')

FD_CONFIG = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')
FSDP2 = dict(
    runner_type='fdclip_mm.CheckedFlexibleRunner',
    strategy=dict(type='fdclip_mm.FSDP2Strategy'),
    model_wrapper_cfg=None)
EPOCHS = 3
KILL_EPOCHS = 12  # long enough to be killed mid-run
cpu_only = pytest.mark.skipif(not is_cpu_only(), reason='CPU gloo runs')


def test_shard_units_match_part_by_part():
    model = nn.Module()
    model.student = nn.Module()
    model.student.layers = nn.ModuleList([nn.Sequential(nn.Linear(2, 2)) for _ in range(2)])
    model.projector = nn.Linear(2, 2)
    assert shard_units(model, ('student.layers.*', 'student',
                               'projector')) == ['student.layers.0', 'student.layers.1', 'student', 'projector']
    with pytest.raises(ValueError, match="'teacher' matches no module"):
        shard_units(model, ('teacher', ))


def test_optimizer_state_converts_between_indices_and_names():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(
        [dict(params=[model[0].weight, model[1].weight]),
         dict(params=[model[0].bias, model[1].bias], weight_decay=0.)])
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    by_index = optimizer.state_dict()
    names = ['0.weight', '1.weight', '0.bias', '1.bias']
    by_name = optimizer_state_to_names(by_index, names)
    assert list(by_name['state']) == names and by_name['param_groups'][1]['params'] == names[2:]
    assert torch.equal(by_name['state']['1.bias']['exp_avg'], by_index['state'][3]['exp_avg'])
    back = optimizer_state_to_indices(by_name)
    assert back['param_groups'] == by_index['param_groups'] and back['state'].keys() == by_index['state'].keys()
    with pytest.raises(ValueError, match='holds 4 parameters, this one 3'):
        optimizer_state_to_names(by_index, names[:3])


def test_mixed_precision_follows_the_precision_rule(monkeypatch):
    monkeypatch.setenv('FDCLIP_CPU_BF16', '1')
    policy = mixed_precision_policy('auto', 'cpu')
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    monkeypatch.setenv('FDCLIP_CPU_BF16', '0')  # a CPU without native bf16: float32
    assert mixed_precision_policy('auto', 'cpu') is None
    assert mixed_precision_policy(None, 'cpu') is None


def write_init_checkpoint(tmp_path, fd_config: str = FD_CONFIG) -> str:
    """The tiny distiller's initial weights, so that both runs start from the same ones (runners draw the
    random init at different moments)."""
    cfg = shrink(Config.fromfile(fd_config), tmp_path)
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    path = str(tmp_path / 'init.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def write_config(tmp_path,
                 name: str,
                 sharded: bool,
                 deterministic: bool = True,
                 epochs: int = EPOCHS,
                 fd_config: str = FD_CONFIG,
                 compile=None) -> str:
    cfg = shrink(Config.fromfile(fd_config), tmp_path)
    cfg.load_from = str(tmp_path / 'init.pth')
    cfg.randomness = dict(seed=0)
    # The two runners draw from the global generators at other moments (the model is built in __init__ or in
    # train()), so random crops and drop path would differ: deterministic steps compare the sharding itself.
    # The resume test below keeps random crops and drop path on.
    if deterministic:
        cfg.model.student.drop_path_rate = 0.
        cfg.train_dataloader.dataset.pipeline = cfg.val_dataloader.dataset.pipeline
        cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=False)
    cfg.custom_imports = dict(imports=['fdclip_mm', 'toy_modules'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='mmengine.FdclipShardReportHook')]
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint = dict(type='fdclip_mm.AtomicCheckpointHook', interval=1, max_keep_ckpts=-1)
    cfg.train_dataloader.batch_size = 1  # 4 images, 2 ranks: 2 steps per epoch
    cfg.optim_wrapper.clip_grad = dict(max_norm=0.05)  # small enough to clip: the global norm across shards
    if sharded:
        cfg.merge_from_dict(FSDP2)
        cfg.model.student.with_cp = True  # activation checkpointing inside the sharded blocks (exact)
    if compile is not None:
        cfg.compile = compile
    path = str(tmp_path / f'{name}.py')
    cfg.dump(path)
    return path


def dist_train(tmp_path, config: str, work_dir: str, *args) -> subprocess.CompletedProcess:
    return run([osp.join(TOOLS, 'dist_train.sh'), config, 2, '--work-dir', work_dir, *args],
               tmp_path,
               PORT=str(free_port()),
               PYTHON=sys.executable)


def losses(work_dir) -> list:
    scalars = [json.loads(line) for path in sorted(glob_scalars(work_dir)) for line in open(path)]
    return [s['loss'] for s in scalars if 'loss' in s]


def glob_scalars(work_dir):
    import glob
    return glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))


def checkpoint(work_dir, epoch: int) -> dict:
    return torch.load(osp.join(work_dir, f'epoch_{epoch}.pth'), map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A 2-process DDP run and a 2-process FSDP2 run of the same tiny FD config (same data, same seed)."""
    root = tmp_path_factory.mktemp('fsdp2')
    write_init_checkpoint(root)
    dist_train(root, write_config(root, 'ddp', sharded=False), 'ddp')
    console = dist_train(root, write_config(root, 'fsdp2', sharded=True), 'fsdp2')
    (root / 'fsdp2_console.txt').write_text(console.stdout + console.stderr)
    dist_train(root, write_config(root, 'fsdp2_random', sharded=True, deterministic=False, epochs=KILL_EPOCHS),
               'fsdp2_random')
    return root


@pytest.mark.slow
@cpu_only
def test_fsdp2_follows_ddp_and_shards_half_per_rank(runs):
    ddp, fsdp2 = runs / 'ddp', runs / 'fsdp2'
    assert len(losses(fsdp2)) == len(losses(ddp)) > 0
    torch.testing.assert_close(torch.tensor(losses(fsdp2)), torch.tensor(losses(ddp)), rtol=1e-4, atol=1e-5)
    a, b = checkpoint(ddp, EPOCHS), checkpoint(fsdp2, EPOCHS)
    assert a['state_dict'].keys() == b['state_dict'].keys()
    assert not any('teacher' in k for k in b['state_dict'])
    for key in a['state_dict']:
        torch.testing.assert_close(b['state_dict'][key], a['state_dict'][key], rtol=1e-4, atol=1e-5, msg=key)
    # the optimizer is in torch.optim's index form, like DDP's: same groups, same moments
    assert [len(g['params']) for g in b['optimizer']['param_groups']] == \
        [len(g['params']) for g in a['optimizer']['param_groups']]
    for index, state in a['optimizer']['state'].items():
        torch.testing.assert_close(b['optimizer']['state'][index]['exp_avg'], state['exp_avg'], rtol=1e-3, atol=1e-6)
    for rank in (0, 1):
        shards = json.load(open(fsdp2 / f'shards_rank{rank}.json'))
        assert 0.45 < shards['params_local'] / shards['params_full'] < 0.55, shards
        assert 0.45 < shards['optim_local'] / shards['optim_full'] < 0.55, shards
        replicated = json.load(open(ddp / f'shards_rank{rank}.json'))
        assert replicated['params_local'] == replicated['params_full'] == shards['params_full']


@pytest.mark.slow
@cpu_only
def test_compiled_ddp_and_fsdp2_runs_follow_the_eager_ddp_run(runs):
    """``compile`` with 2 gloo processes: DDP, and FSDP2 with activation checkpointing (aot_eager: dynamo and
    AOTAutograd as inductor gets them, without its C++ build)."""
    compile = dict(backend='aot_eager')
    dist_train(runs, write_config(runs, 'ddp_compiled', sharded=False, compile=compile), 'ddp_compiled')
    dist_train(runs, write_config(runs, 'fsdp2_compiled', sharded=True, compile=compile), 'fsdp2_compiled')
    expected = torch.tensor(losses(runs / 'ddp'))
    for name in ('ddp_compiled', 'fsdp2_compiled'):
        log = open(glob_logs(runs / name)[0]).read()
        assert "torch.compile {'backend': 'aot_eager'} of 4 blocks" in log, name
        torch.testing.assert_close(torch.tensor(losses(runs / name)), expected, rtol=1e-4, atol=1e-5, msg=name)
        assert checkpoint(runs / name, EPOCHS)['state_dict'].keys() == checkpoint(runs / 'ddp',
                                                                                  EPOCHS)['state_dict'].keys()


def glob_logs(work_dir):
    import glob
    return glob.glob(osp.join(work_dir, '*', '*.log'))


@pytest.mark.slow
@cpu_only
def test_a_sharded_run_has_the_guarantees_of_a_plain_one(runs):
    """The checked runner (runner_type fdclip_mm.CheckedFlexibleRunner): a quiet console, no overwrite of an earlier
    run, exact loading (of the earlier key layout too), and a one-line answer to a plain start."""
    console = (runs / 'fsdp2_console.txt').read_text()
    for file_only in ('Config:', 'System environment:', 'Hooks will be executed', 'returned a view tensor'):
        assert file_only not in console
    assert 'Epoch(train) [3]' in console
    work_dir = runs / 'fsdp2'
    before = {name: osp.getmtime(work_dir / name) for name in os.listdir(work_dir)}
    again = call([osp.join(TOOLS, 'dist_train.sh'), 'fsdp2.py', '2', '--work-dir', 'fsdp2'],
                 runs,
                 PORT=str(free_port()),
                 PYTHON=sys.executable)
    assert again.returncode != 0 and 'already holds a run (epoch_3.pth, epoch_2.pth, epoch_1.pth, ' \
        'last_checkpoint) that this run would overwrite' in again.stderr
    assert {name: osp.getmtime(work_dir / name) for name in os.listdir(work_dir)} == before
    plain = call([sys.executable, osp.join(TOOLS, 'train.py'), 'fsdp2.py', '--work-dir', 'plain'], runs)
    assert plain.returncode == 1 and plain.stderr.strip().splitlines() == [
        '[error] FSDP2Strategy shards the model over processes and needs a distributed launch: bash '
        'tools/dist_train.sh CONFIG NUM_PROCESSES (or tools/train.py CONFIG --launcher pytorch under torchrun, '
        'or --launcher slurm)'
    ]
    # load_from must fit the model exactly, as in plain runs
    state = checkpoint(work_dir, EPOCHS)['state_dict']
    backbone = runs / 'backbone_only.pth'
    torch.save({'state_dict': {k: v for k, v in state.items() if k.startswith('student.')}}, backbone)
    refused = call([
        osp.join(TOOLS, 'dist_train.sh'), 'fsdp2.py', '2', '--work-dir', 'exact', '--cfg-options',
        f'load_from={backbone}'
    ],
                   runs,
                   PORT=str(free_port()),
                   PYTHON=sys.executable)
    assert refused.returncode != 0 and 'backbone_only.pth does not fit FeatureDistiller: missing keys ' \
        "['branches.t0.projector.weight', 'branches.t0.projector.bias']" in refused.stderr
    # a checkpoint of the earlier layout (the projector by teacher index, beside the student) loads exactly
    earlier = runs / 'earlier_layout.pth'
    earlier_state = {k.replace('branches.t0.projector.', 'projectors.0.'): v for k, v in state.items()}
    torch.save({'state_dict': earlier_state}, earlier)
    loaded = call([
        osp.join(TOOLS, 'dist_train.sh'), 'fsdp2.py', '2', '--work-dir', 'earlier', '--cfg-options',
        f'load_from={earlier}', 'train_cfg.max_epochs=1'
    ],
                  runs,
                  PORT=str(free_port()),
                  PYTHON=sys.executable)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert f'Load checkpoint from {earlier}' in loaded.stdout + loaded.stderr


@pytest.mark.slow
@cpu_only
def test_sharded_checkpoint_converts_and_loads_into_the_classifier(runs, tmp_path):
    source = str(runs / 'fsdp2' / f'epoch_{EPOCHS}.pth')
    student = convert_fd_checkpoint(source, str(tmp_path / 'backbone.pth'))
    backbone = FDViT(arch=TINY_ARCH, img_size=224, patch_size=16)
    backbone.load_state_dict(student, strict=True)
    classifier = convert_fd_to_classifier(source, str(tmp_path / 'cls.pth'))
    finetune = FDViT(
        arch=TINY_ARCH, img_size=224, patch_size=16, pos_embed='rpb', final_norm=False, out_type='avg_featmap')
    finetune.load_state_dict(classifier, strict=True)


@pytest.mark.slow
@cpu_only
def test_kill_9_then_resume_ends_like_the_uninterrupted_sharded_run(runs):
    config = osp.join(runs, 'fsdp2_random.py')
    work_dir = runs / 'killed'
    cmd = [osp.join(TOOLS, 'dist_train.sh'), config, '2', '--work-dir', 'killed']
    log = open(runs / 'killed.log', 'w')
    proc = subprocess.Popen(
        cmd,
        cwd=runs,
        env=tool_env(PORT=str(free_port()), PYTHON=sys.executable),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.time() + 240
    while not (work_dir / 'epoch_1.pth').exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    # every process of the job and none other: the launcher and its workers (torchrun starts them in sessions of
    # their own, out of reach of the launcher's process group), found from the process this test started
    kill_tree(proc.pid)
    proc.wait()
    time.sleep(1)
    assert (work_dir / 'epoch_1.pth').exists(), open(runs / 'killed.log').read()[-3000:]
    assert not (work_dir / f'epoch_{KILL_EPOCHS}.pth').exists()

    dist_train(runs, config, 'killed', '--resume')
    resumed, uninterrupted = checkpoint(work_dir, KILL_EPOCHS), checkpoint(runs / 'fsdp2_random', KILL_EPOCHS)
    for key, value in uninterrupted['state_dict'].items():
        assert torch.equal(resumed['state_dict'][key], value), key
    for index, state in uninterrupted['optimizer']['state'].items():
        assert torch.equal(resumed['optimizer']['state'][index]['exp_avg_sq'], state['exp_avg_sq'])


def test_units_come_from_the_model_for_any_student_and_teacher_count(tmp_path):
    """No module name is written into the strategy: FDViT, Swin and the fine-tuning classifier all shard."""
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier

    from fdclip_mm.engine.fsdp2_strategy import auto_shard_units, frozen_shard_units
    from fdclip_mm.models.algorithms import FeatureDistiller
    from ..helpers.checkpoints import tiny_teacher_cfg
    clip = tiny_teacher_cfg('clip', str(tmp_path / 'clip.pth'), width=32, patch=8, image=32)
    dino = tiny_teacher_cfg('timm_vit', str(tmp_path / 'dino.pth'), width=48, patch=16, image=32)
    fdvit = dict(
        type='FDViT',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=8)
    two_teachers = FeatureDistiller(
        student=fdvit, teachers=[dict(teacher=clip, name='clip'),
                                 dict(teacher=dino, name='dino')])
    assert auto_shard_units(two_teachers) == [
        'student.layers.0', 'student.layers.1', 'branches.clip.projector', 'branches.dino.projector', 'student'
    ]
    assert frozen_shard_units(two_teachers) == [
        'branches.clip.teacher.backbone.layers.*', 'branches.clip.teacher', 'branches.dino.teacher.backbone.layers.*',
        'branches.dino.teacher'
    ]
    swin = FeatureDistiller(
        student=dict(
            type='mmpretrain.SwinTransformer',
            arch=dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2]),
            img_size=32,
            out_indices=(3, )),
        teacher=clip)
    # not the stages: mmpretrain's Swin calls stage.downsample from its own forward, outside the stage's
    assert auto_shard_units(swin) == [
        'student.stages.0.blocks.0', 'student.stages.1.blocks.0', 'student.stages.2.blocks.0',
        'student.stages.2.blocks.1', 'student.stages.3.blocks.0', 'branches.t0.projector', 'student'
    ]
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # whatever scope earlier tests left
        classifier = ImageClassifier(
            backbone=dict(fdvit, type='fdclip_mm.FDViT', out_type='avg_featmap'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32))
    assert auto_shard_units(classifier) == ['backbone.layers.0', 'backbone.layers.1', 'backbone', 'head']


@pytest.mark.slow
@cpu_only
def test_fsdp2_shards_a_swin_student_that_the_strategy_does_not_name(tmp_path):
    swin_config = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_swin-t-dp0.1_16xb128-300e_in1k.py')
    write_init_checkpoint(tmp_path, swin_config)
    dist_train(tmp_path, write_config(tmp_path, 'swin', sharded=True, epochs=1, fd_config=swin_config), 'swin')
    assert len(losses(tmp_path / 'swin')) > 0 and osp.isfile(tmp_path / 'swin' / 'epoch_1.pth')
    for rank in (0, 1):
        shards = json.load(open(tmp_path / 'swin' / f'shards_rank{rank}.json'))
        assert 0.45 < shards['params_local'] / shards['params_full'] < 0.55, shards
