"""``compile=True``: the blocks compile, runs equal eager ones, checkpoints and resume cross both ways."""
import copy
import glob
import os.path as osp
import re
import shutil
import sys

import pytest
import torch
from mmcv.cnn.bricks.drop import DropPath as MmcvDropPath
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from fdclip_mm.converters import convert_fd_checkpoint
from fdclip_mm.engine import BlockCompileHook, compile_blocks, repeated_blocks
from fdclip_mm.engine.block_compile import compile_args, dynamo_counts, remove_zero_drop_paths, summarize_blocks
from fdclip_mm.models.backbones import DropPath, ViTBlock
from ..helpers.config_lists import REPO
from ..helpers.tiny_fd_configs import deterministic_fd_config, shrink
from ..helpers.tools import TOOLS, run

TWO_TEACHERS = osp.join(REPO, 'configs', 'fd', 'fd_clip-dino-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py')
SWIN = osp.join(REPO, 'configs', 'fd', 'fd_clip-vit-b16_swin-t-dp0.1_16xb128-300e_in1k.py')


def build(config: str, tmp_path, **model) -> nn.Module:
    tmp_path.mkdir(exist_ok=True)
    cfg = shrink(Config.fromfile(config), tmp_path)
    cfg.model.update(model)
    init_default_scope('mmpretrain')
    return MODELS.build(cfg.model)


def test_the_blocks_are_the_items_of_the_innermost_module_lists(tmp_path):
    distiller = build(TWO_TEACHERS, tmp_path)
    names = [name for name, _ in repeated_blocks(distiller)]
    assert summarize_blocks(names) == ('student.layers.0-1, branches.clip.teacher.backbone.layers.0-1, '
                                       'branches.dino.teacher.backbone.layers.0-1'), names
    swin = build(SWIN, tmp_path / 'swin')
    assert all(
        re.fullmatch(r'student\.stages\.\d\.blocks\.\d|branches\.t0\.teacher\.backbone\.layers\.\d', name)
        for name, _ in repeated_blocks(swin))
    with pytest.raises(ValueError, match='Linear has no nn.ModuleList of blocks'):
        compile_blocks(nn.Linear(2, 2), {})


def test_zero_rate_drop_paths_of_every_kind_become_identities():
    """mmcv's, ours and timm's, found by class (a module merely named DropPath stays)."""
    from timm.layers import DropPath as TimmDropPath

    class DropPathLookalike(nn.Module):  # named like one, is none
        drop_prob = 0.

    block = nn.ModuleDict(dict(mmcv=MmcvDropPath(0.), ours=DropPath(0.), timm=TimmDropPath(0.), kept=DropPath(0.1)))
    block.inner = nn.Sequential(MmcvDropPath(0.))
    block.lookalike = DropPathLookalike()
    DropPathLookalike.__name__ = 'DropPath'
    remove_zero_drop_paths(block)
    assert [type(block[k]).__name__ for k in ('mmcv', 'ours', 'timm')] == ['Identity'] * 3
    assert isinstance(block.inner[0], nn.Identity) and isinstance(block.kept, DropPath)
    assert isinstance(block.lookalike, DropPathLookalike)


def test_compile_settings_are_torch_compile_arguments():
    assert compile_args(None) is None and compile_args(False) is None and compile_args(True) == {}
    # mmengine's FlexibleRunner adds target='train_step'; the blocks are compiled whatever the target
    assert compile_args(dict(backend='aot_eager', target='train_step')) == dict(backend='aot_eager')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['modes'\]"):
        compile_args(dict(modes='max-autotune'))
    with pytest.raises(ValueError, match='must be True, False or a dict'):
        compile_args('inductor')
    # torch itself would say so only at the first compiled call, after the whole model is built
    with pytest.raises(
            ValueError,
            match=r"^compile.backend='nonsense' is not a torch.compile backend; this torch "
            r"has \[.*'inductor'"):
        compile_args(dict(backend='nonsense'))


@pytest.mark.slow
def test_drop_path_equals_mmcvs_in_eager_mode_and_compiles_one_graph_for_all_rates():
    x = torch.randn(8, 5, 4)
    for rate in (0.1, 0.5):
        ours, theirs = DropPath(rate), MmcvDropPath(rate)
        torch.manual_seed(0)
        expected = theirs(x)
        torch.manual_seed(0)
        assert torch.equal(ours(x), expected)
        assert torch.equal(ours.eval()(x), x)
    blocks = nn.ModuleList([ViTBlock(8, 2, 16, drop_path_rate=rate) for rate in (0.1, 0.2, 0.3)])
    before = dynamo_counts()
    for block in blocks:
        block.compile(backend='aot_eager')
    y = torch.randn(2, 3, 8, requires_grad=True)
    for block in blocks:
        y = block(y)
    y.sum().backward()
    assert dynamo_counts()['graphs'] - before['graphs'] == 1
    assert not [key for key in dynamo_counts() if key.startswith('break') and key not in before]


def steps(model: nn.Module, inputs: torch.Tensor, count: int, first: int = 0) -> list:
    """SGD steps ``first .. first + count - 1`` of the distiller on ``inputs``; the losses and last gradients."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    losses = []
    for step in range(first, first + count):
        torch.manual_seed(step)  # the same masks (drawn outside the blocks) in both models
        loss = sum(model(inputs, mode='loss').values())
        loss.backward()
        losses.append(loss.detach())
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        optimizer.zero_grad()
    return losses, grads


@pytest.mark.slow
def test_compiled_blocks_follow_eager_with_masks_two_teachers_bf16_and_checkpointing(tmp_path):
    """Masked input, two teachers (one held in bf16), activation checkpointing: the same losses and gradients
    as eager over 3 steps, no graph compiled after the first step, checkpoint keys unchanged."""
    cfg = shrink(Config.fromfile(TWO_TEACHERS), tmp_path)
    cfg.model.mask_ratio = 0.5
    cfg.model.student.update(with_cp=True, drop_path_rate=0.)
    cfg.model.teachers[1].teacher.dtype = 'bfloat16'
    init_default_scope('mmpretrain')
    eager = MODELS.build(cfg.model)
    compiled = copy.deepcopy(eager)
    names = compile_blocks(compiled, dict(backend='aot_eager'))
    assert len(names) == 6 and compiled.state_dict().keys() == eager.state_dict().keys()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    inputs = eager.data_preprocessor(dict(inputs=images))['inputs']
    expected, expected_grads = steps(eager, inputs, 3)
    before = dynamo_counts()['graphs']
    losses = steps(compiled, inputs, 1)[0]
    first = dynamo_counts()['graphs']
    more, grads = steps(compiled, inputs, 2, first=1)
    assert 0 < first - before <= 4 and dynamo_counts()['graphs'] == first  # student, 2 teachers, recompute
    torch.testing.assert_close(torch.stack(losses + more), torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def run_log(work_dir) -> str:
    return open(sorted(glob.glob(osp.join(work_dir, '*', '*.log')))[-1]).read()


def losses_of(work_dir) -> list:
    return [float(v) for v in re.findall(r'Epoch\(train\).*?loss: ([\d.]+)', run_log(work_dir))]


@pytest.mark.slow
def test_a_compiled_run_follows_eager_and_resumes_across_both(tmp_path):
    """``compile = True`` through tools/train.py (inductor): the losses of an eager run, the same checkpoint
    keys, a bounded number of graphs, and each run resumes from the other's checkpoint."""
    cfg = deterministic_fd_config(tmp_path, 2)
    cfg.dump(str(tmp_path / 'eager.py'))
    cfg.train_cfg.max_epochs = 3
    cfg.dump(str(tmp_path / 'eager3.py'))
    cfg.compile = True
    cfg.dump(str(tmp_path / 'compiled3.py'))
    cfg.train_cfg.max_epochs = 2
    cfg.dump(str(tmp_path / 'compiled.py'))
    train = [sys.executable, osp.join(TOOLS, 'train.py')]
    run(train + ['eager.py', '--work-dir', 'eager'], tmp_path)
    run(train + ['compiled.py', '--work-dir', 'compiled'], tmp_path)

    log = run_log(tmp_path / 'compiled')
    assert 'torch.compile (defaults) of 4 blocks (student.layers.0-1, branches.t0.teacher.backbone.layers.0-1)' in log
    graphs = int(re.search(r'torch.compile: (\d+) graph\(s\) compiled in the first iteration', log)[1])
    assert graphs <= 2 and 'recompiled' not in log and 'graph break' not in log
    torch.testing.assert_close(
        torch.tensor(losses_of(tmp_path / 'compiled')),
        torch.tensor(losses_of(tmp_path / 'eager')),
        rtol=1e-4,
        atol=1e-6)
    eager_ckpt = torch.load(tmp_path / 'eager' / 'epoch_2.pth', map_location='cpu', weights_only=True)
    compiled_ckpt = torch.load(tmp_path / 'compiled' / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert compiled_ckpt['state_dict'].keys() == eager_ckpt['state_dict'].keys()
    backbone = convert_fd_checkpoint(str(tmp_path / 'compiled' / 'epoch_2.pth'), str(tmp_path / 'backbone.pth'))
    assert backbone.keys() == convert_fd_checkpoint(
        str(tmp_path / 'eager' / 'epoch_2.pth'), str(tmp_path / 'eager_backbone.pth')).keys()

    shutil.copytree(tmp_path / 'eager', tmp_path / 'eager_then_compiled')
    shutil.copytree(tmp_path / 'compiled', tmp_path / 'compiled_then_eager')
    run(train + ['compiled3.py', '--work-dir', 'eager_then_compiled', '--resume'], tmp_path)
    run(train + ['eager3.py', '--work-dir', 'compiled_then_eager', '--resume'], tmp_path)
    a = torch.load(tmp_path / 'eager_then_compiled' / 'epoch_3.pth', map_location='cpu', weights_only=True)
    b = torch.load(tmp_path / 'compiled_then_eager' / 'epoch_3.pth', map_location='cpu', weights_only=True)
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.slow
def test_the_hook_compiles_in_mmengines_own_runner(tmp_path):
    """With another runner the hook is added by hand (and the config has no ``compile`` key)."""
    from mmengine.runner import Runner
    cfg = deterministic_fd_config(tmp_path, 1)
    cfg.custom_hooks = [dict(type='fdclip_mm.BlockCompileHook', compile=dict(backend='aot_eager'))]
    cfg.work_dir = str(tmp_path / 'plain')
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner._hooks if isinstance(h, BlockCompileHook))
    assert len(hook.blocks) == 4 and runner.iter == 2
    assert 'torch.compile: ' in run_log(tmp_path / 'plain')


class ListLogger:

    def __init__(self) -> None:
        self.lines = []

    def info(self, message: str) -> None:
        self.lines.append(('info', message))

    def warning(self, message: str) -> None:
        self.lines.append(('warning', message))


def test_graphs_compiled_after_the_first_epoch_are_reported_as_recompilation():
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2)])
    runner = type('FakeRunner', (), dict(model=model, logger=ListLogger(), epoch=0))()
    hook = BlockCompileHook(dict(backend='aot_eager'))
    hook.before_train(runner)

    def epoch(batch: int) -> None:
        hook.before_train_epoch(runner)
        for _ in range(2):
            model.blocks[1](model.blocks[0](torch.randn(batch, 4)))
            hook.after_train_iter(runner, 0)
        hook.after_train_epoch(runner)
        runner.epoch += 1

    epoch(3)
    epoch(3)
    assert [level for level, _ in runner.logger.lines] == ['info', 'info']
    epoch(5)  # a new batch size in steady state
    level, message = runner.logger.lines[-1]
    assert level == 'warning' and re.match(r'torch.compile: \d graph\(s\) recompiled in epoch 3', message), message


@pytest.mark.slow
def test_a_fine_tuning_run_compiles_its_backbone_blocks(tmp_path):
    """Fine-tuning (mmpretrain's ImageClassifier, our FDViT, layer decay, mixup) with ``compile``."""
    from fdclip_mm.engine import build_checked_runner
    from ..helpers.tiny_finetune_configs import shrink as shrink_finetune
    cfg = shrink_finetune(
        Config.fromfile(osp.join(REPO, 'configs', 'finetune_in1k', 'fd-clip-vit-b16_16xb128-100e_in1k.py')), tmp_path)
    cfg.compile = dict(backend='aot_eager')
    runner = build_checked_runner(cfg)
    runner.train()
    log = run_log(cfg.work_dir)
    assert re.search(r"torch.compile \{'backend': 'aot_eager'\} of \d+ blocks \(backbone.layers.0-", log), log[-2000:]
    assert runner.message_hub.get_scalar('train/loss').current() > 0
