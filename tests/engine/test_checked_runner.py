"""CheckedRunner: exact loading, clear resume, fallback from a corrupt checkpoint, no silent overwrite."""
import glob
import os.path as osp
import shutil
import sys
import uuid

import pytest
import torch
from mmengine.config import Config

from fdclip_mm.checkpoint import CheckpointFileError, CheckpointMismatchError, NonFiniteWeightsError
from fdclip_mm.engine import CheckedRunner, RunRefused, build_checked_runner, is_cpu_only

TOY_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools')
sys.path.insert(0, TOY_DIR)  # the toy config imports toy_modules
import toy_modules  # noqa: E402

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): full_run is built once
pytestmark = pytest.mark.xdist_group('test_checked_runner')


def toy_runner(tmp_path, work_dir, max_iters=8, **options) -> CheckedRunner:
    path = toy_modules.write_toy_config(str(tmp_path / f'toy_{max_iters}.py'), max_iters)
    cfg = Config.fromfile(path)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'toy_{uuid.uuid4().hex[:8]}'  # a fresh logger per runner
    cfg.merge_from_dict(options)
    return CheckedRunner.from_cfg(cfg)


def log_text(runner) -> str:
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def weights(work_dir) -> dict:
    return torch.load(osp.join(work_dir, 'weights_rank0.pth'), weights_only=True)


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    """8 uninterrupted iterations (checkpoints iter_4, iter_8); returns the work dir."""
    root = tmp_path_factory.mktemp('checked_runner')
    toy_runner(root, root / 'full').train()
    return root / 'full'


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_stops_the_test(tmp_path, full_run):
    metrics = toy_runner(tmp_path, tmp_path / 'ok', load_from=str(full_run / 'iter_8.pth')).test()
    assert metrics['mse'] >= 0

    state = torch.load(full_run / 'iter_8.pth', weights_only=False)['state_dict']
    backbone = tmp_path / 'backbone.pth'  # keys without the model's prefix, as a converter writes them
    torch.save({'state_dict': {k.replace('linear.', ''): v for k, v in state.items()}}, backbone)
    with pytest.raises(
            CheckpointMismatchError,
            match=r'backbone.pth does not fit FdclipToyModel \(0 of its 2 '
            r'tensors.*2 missing keys \(linear.weight, linear.bias\); 2 unexpected keys'):
        toy_runner(tmp_path, tmp_path / 'backbone', load_from=str(backbone)).test()

    wide = tmp_path / 'wide.pth'
    torch.save({'state_dict': dict(state, **{'linear.weight': torch.zeros(2, 8)})}, wide)
    with pytest.raises(CheckpointMismatchError, match='shape mismatches: size mismatch for linear.weight'):
        toy_runner(tmp_path, tmp_path / 'wide', load_from=str(wide)).test()
    # on purpose: what fits
    toy_runner(tmp_path, tmp_path / 'lenient', load_from=str(backbone), strict_load=False).test()


@pytest.mark.slow
def test_load_from_in_training_must_fit_too(tmp_path):
    backbone = tmp_path / 'backbone.pth'
    torch.save({'state_dict': {'weight': torch.zeros(2, 4)}}, backbone)
    with pytest.raises(CheckpointMismatchError, match='backbone.pth does not fit'):
        toy_runner(tmp_path, tmp_path / 'run', load_from=str(backbone)).train()


@pytest.mark.slow
def test_resume_with_nothing_to_resume_says_so(tmp_path):
    runner = toy_runner(tmp_path, tmp_path / 'fresh', max_iters=4, resume=True)
    runner.train()
    log = log_text(runner)
    assert 'no checkpoint in' in log and 'training starts from scratch' in log
    assert 'Auto resumed from the latest checkpoint None' not in log
    assert osp.isfile(tmp_path / 'fresh' / 'iter_4.pth')


@pytest.mark.slow
def test_resume_skips_a_corrupt_latest_checkpoint_and_ends_like_the_uninterrupted_run(tmp_path, full_run):
    work_dir = tmp_path / 'corrupt'
    shutil.copytree(full_run, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_8.pth'))
    data = (work_dir / 'iter_8.pth').read_bytes()
    (work_dir / 'iter_8.pth').write_bytes(data[:len(data) // 3])
    (work_dir / 'weights_rank0.pth').unlink()

    runner = toy_runner(tmp_path, work_dir, resume=True)
    runner.train()
    log = log_text(runner)
    assert 'skipped an unreadable checkpoint' in log and 'iter_8.pth is truncated or corrupt' in log
    assert f'Resumed from {work_dir / "iter_4.pth"}' in log
    resumed, uninterrupted = weights(work_dir), weights(full_run)
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_resume_from_an_explicit_corrupt_checkpoint_stops_with_its_path(tmp_path, full_run):
    bad = tmp_path / 'iter_8.pth'
    bad.write_bytes((full_run / 'iter_8.pth').read_bytes()[:100])
    with pytest.raises(CheckpointFileError, match=f'{bad} is truncated or corrupt'):
        toy_runner(tmp_path, tmp_path / 'explicit', resume=True, load_from=str(bad)).train()


@pytest.mark.slow
def test_a_new_run_refuses_to_replace_an_earlier_one(tmp_path, full_run):
    work_dir = tmp_path / 'earlier'
    shutil.copytree(full_run, work_dir)
    before = {p: osp.getmtime(p) for p in glob.glob(str(work_dir / '*.pth'))}
    with pytest.raises(
            FileExistsError,
            match=r'already holds a run \(iter_8.pth, iter_4.pth, last_checkpoint\).*'
            r'--resume.*--overwrite'):
        toy_runner(tmp_path, work_dir, max_iters=4).train()
    assert {p: osp.getmtime(p) for p in before} == before
    toy_runner(tmp_path, work_dir, max_iters=4, overwrite=True).train()
    assert open(work_dir / 'last_checkpoint').read().strip().endswith('iter_4.pth')
    # the earlier run's files are set aside, not deleted, and --resume does not find them
    (aside, ) = glob.glob(str(work_dir / 'earlier_run_*'))
    assert {
        p: osp.getmtime(p)
        for p in glob.glob(osp.join(aside, '*.pth'))
    } == {
        p.replace(str(work_dir), aside): t
        for p, t in before.items()
    }
    assert not osp.exists(work_dir / 'iter_8.pth')


@pytest.mark.slow
def test_no_run_replaces_the_config_dump_of_an_earlier_run(tmp_path, full_run):
    work_dir = tmp_path / 'earlier'
    shutil.copytree(full_run, work_dir)
    dump = work_dir / 'toy_8.py'
    before = dump.read_text()
    with pytest.raises(FileExistsError, match='already holds a run'):
        toy_runner(tmp_path, work_dir, optim_wrapper=dict(optimizer=dict(lr=5e-4))).train()
    assert dump.read_text() == before
    # a resumed run with other options keeps it too; its own config goes to its timestamped log folder
    resumed = toy_runner(tmp_path, work_dir, resume=True, train_cfg=dict(max_iters=8))
    assert dump.read_text() == before and 'lr=0.0005' not in before
    assert 'resume = True' in open(osp.join(resumed.log_dir, 'toy_8.py')).read()
    replacing = toy_runner(tmp_path, work_dir, overwrite=True)
    assert dump.read_text() == before  # not when the runner is built (tools/test.py with a dumped config)
    replacing.train()  # a new run on request: the earlier run's dump is set aside with its files
    (aside, ) = glob.glob(str(work_dir / 'earlier_run_*'))
    assert open(osp.join(aside, 'toy_8.py')).read() == before
    assert 'overwrite = True' in dump.read_text()


@pytest.mark.slow
def test_console_shows_no_config_dump_but_the_log_file_keeps_it(tmp_path, capsys):
    runner = toy_runner(tmp_path, tmp_path / 'quiet', max_iters=2)
    runner.train()
    console = capsys.readouterr().out
    log = log_text(runner)
    assert 'Config:' in log and 'System environment:' in log and 'Hooks will be executed' in log
    assert 'Config:' not in console and 'System environment:' not in console
    assert 'Hooks will be executed' not in console and 'FileClient' not in console
    assert 'Iter(train) [2/2]' in console


def test_a_torchscript_file_given_to_test_is_named_as_such(tmp_path):
    """tools/test.py (CheckedRunner.load_checkpoint) on an OpenAI-style TorchScript archive says what it is."""
    archive = tmp_path / 'ViT-B-16.pt'
    torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2), torch.randn(1, 4)), str(archive))
    with pytest.raises(CheckpointFileError, match=r'ViT-B-16.pt is a TorchScript archive .*teacher reader \'clip\''):
        toy_runner(tmp_path, tmp_path / 'jit', load_from=str(archive)).test()


@pytest.mark.slow
def test_a_copied_work_dir_resumes_from_its_own_checkpoints(tmp_path, full_run):
    """``cp -a A B``, A replaced by another run: B's last_checkpoint names A's file, B resumes from its own."""
    first, copy = tmp_path / 'a', tmp_path / 'b'
    shutil.copytree(full_run, first)
    (first / 'last_checkpoint').write_text(str(first / 'iter_8.pth'))
    shutil.copytree(first, copy)
    shutil.copyfile(first / 'iter_4.pth', first / 'iter_8.pth')  # A now holds another state under that name
    runner = toy_runner(tmp_path, copy, max_iters=12, resume=True)
    runner.train()
    log = log_text(runner)
    assert f'Resumed from {copy / "iter_8.pth"}, the latest readable checkpoint in {copy}' in log
    assert 'resumed epoch: 0, iter: 8' in log and runner.iter == 12

    (copy / 'last_checkpoint').write_text(str(tmp_path / 'elsewhere' / 'iter_16.pth'))
    with pytest.raises(RunRefused, match=r'names \S*elsewhere/iter_16.pth, which is outside .*--resume'):
        toy_runner(tmp_path, copy, max_iters=20, resume=True).train()


@pytest.mark.slow
def test_resuming_a_finished_run_says_so_and_past_its_end_is_refused(tmp_path, full_run):
    """mmengine ended both at once with exit code 0, saying nothing."""
    work_dir = tmp_path / 'finished'
    shutil.copytree(full_run, work_dir)
    runner = toy_runner(tmp_path, work_dir, max_iters=4, resume=True)
    with pytest.raises(
            RunRefused,
            match=r'iter_8.pth: the run already finished at iteration 8 beyond train_cfg.max_iters=4; raise '
            'max_iters to continue it'):
        runner.train()
    runner = toy_runner(tmp_path, work_dir, max_iters=8, resume=True)
    runner.train()
    assert runner.iter == 8 and (
        f'{work_dir / "iter_8.pth"}: the run already finished at iteration 8 '
        '(train_cfg.max_iters=8); raise max_iters to continue it: nothing to train') in log_text(runner)


@pytest.mark.slow
def test_an_epoch_of_no_iteration_is_refused_before_the_first_step(tmp_path):
    runner = toy_runner(
        tmp_path,
        tmp_path / 'empty',
        train_dataloader=dict(
            sampler=dict(type='DefaultSampler', shuffle=True), drop_last=True, dataset=dict(length=3)),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=1, _delete_=True),
        param_scheduler=[dict(type='CosineAnnealingLR', T_max=2, by_epoch=True)])
    with pytest.raises(
            RunRefused,
            match=r'0 iterations per epoch: .* 3 items, 3 per process, fewer than '
            r'train_dataloader.batch_size=4 with drop_last=True'):
        runner.train()
    assert not glob.glob(str(tmp_path / 'empty' / '*.pth'))


@pytest.mark.slow
def test_load_from_with_a_nan_weight_is_refused_naming_file_and_tensor(tmp_path, full_run):
    state = torch.load(full_run / 'iter_8.pth', weights_only=False)
    state['state_dict']['linear.bias'][1] = float('nan')
    bad = tmp_path / 'nan.pth'
    torch.save(state, bad)
    with pytest.raises(
            NonFiniteWeightsError,
            match=rf'{bad} holds non-finite weights in 1 tensor\(s\): linear.bias \(1 NaN, 0 inf of 2\)'):
        toy_runner(tmp_path, tmp_path / 'nan', load_from=str(bad)).train()


def test_an_unknown_compile_backend_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(toy_modules.FdclipToyModel, '__init__',
                        lambda self, *a, **k: built.append(1) or torch.nn.Module.__init__(self))
    with pytest.raises(
            ValueError,
            match=r"compile.backend='nonsense' is not a torch.compile backend; this torch "
            r"has \[.*'inductor'"):
        toy_runner(tmp_path, tmp_path / 'compile', compile=dict(backend='nonsense'))
    assert not built


@pytest.mark.slow
@pytest.mark.skipif(not is_cpu_only(), reason='CPU-only behaviour')
def test_flex_attention_trained_on_the_cpu_is_refused_before_the_first_step(tiny_clip_teacher, image_folder, tmp_path):
    from ..helpers.distiller import PIPELINE, distill_config
    cfg = Config(distill_config(tiny_clip_teacher, image_folder, str(tmp_path / 'flex'), PIPELINE, None))
    cfg.model.student.attn_backend = 'flex'
    runner = build_checked_runner(cfg)
    with pytest.raises(RunRefused, match=r"model.student.attn_backend='flex' \(student.layers.0.attn\)"):
        runner.train()
    assert runner.iter == 0


def test_the_runner_is_the_one_the_config_names(tmp_path, capsys):
    """No runner_type: ours; a named one as named (mmengine's without our checks, said in a warning); --overwrite
    only with ours, which moves the earlier run aside."""
    from mmengine.runner import Runner
    path = toy_modules.write_toy_config(str(tmp_path / 'toy.py'), 8)

    def config(name, **options):
        cfg = Config.fromfile(path)
        cfg.merge_from_dict(
            dict(work_dir=str(tmp_path / name), experiment_name=f'toy_{uuid.uuid4().hex[:8]}', **options))
        return cfg

    assert type(build_checked_runner(config('unnamed'))) is CheckedRunner
    assert type(build_checked_runner(config('ours', runner_type='fdclip_mm.CheckedRunner'))) is CheckedRunner
    assert type(build_checked_runner(config('mmengine', runner_type='Runner'))) is Runner
    assert "runner_type='Runner': Runner as the config names it, without fdclip_mm's checks" in capsys.readouterr().out
    with pytest.raises(RunRefused, match=r"--overwrite moves the earlier run aside, which runner_type='Runner' does"):
        build_checked_runner(config('overwrite', runner_type='Runner', overwrite=True))
