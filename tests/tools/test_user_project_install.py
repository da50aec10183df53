"""Bringing fdclip_mm into an existing OpenMMLab project, as a user does: build the wheel, ``mim install`` it into a
separate virtual environment that stands for their mmdet / mmseg project, then run that project's own tools.

The environment holds what such a project has (torch, the CPU mmcv wheel, mmengine, mmdet 3.3, mmseg 1.2.2 and
openmim, whose dependency openxlab pins setuptools 60.2: the "older setuptools" of a real set-up). torch comes
from pip's cache and mmcv from the wheel cache of ``scripts/setup_env.sh``, as in the project's own set-up.
Checked: building leaves the checkout as it was; the install changes no version of what was installed and adds
no ``pip check`` conflict; ``mim list`` and ``mim search`` work; mmdet's, mmseg's and mmpretrain's own
``tools/train.py`` (copied into a folder that holds nothing else of ours), ``mim train mmdet`` and ``mim test
mmdet`` run configs that inherit ours and a config of mmdet's own bases with our modules; ``mim train fdclip_mm``
(one process and, with ``--gpus 2 --launcher pytorch``, two) and ``mim test fdclip_mm`` run our tools from the
wheel. About 4 minutes on 2 cores, most of it installing the environment.
"""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

import fdclip_mm
from ..helpers.dense_data import write_ade_folder, write_coco
from ..helpers.tiny_finetune_configs import write_labelled_folder
from ..helpers.user_projects import PROJECT_CONFIG as MMDET_OWN_BASES_CONFIG

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): user_project is built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('test_user_project_install')]

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PINS = osp.join(REPO, 'requirements', 'pinned.txt')
TIMEOUT = 900

# Each user config inherits one of ours through mmengine's `_base_` evaluation (fdclip_mm.base_config) and
# points it at the tiny data the test writes; nothing else of the recipe is changed.
MMDET_INHERITING_CONFIG = """
_base_ = __import__('fdclip_mm').base_config('demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py')
data_root = 'coco/'
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
"""
MMSEG_INHERITING_CONFIG = """
_base_ = __import__('fdclip_mm').base_config('demo/upernet_fdvit-t14-6l_labelme-ade.py')
data_root = 'ade/ADEChallengeData2016'
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
"""
MMPRETRAIN_INHERITING_CONFIG = """
_base_ = __import__('fdclip_mm').base_config('demo/finetune_fdvit-t8-4l_digits.py')
data_root = 'digits'
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1))
"""
# What the stand-in project installs besides torch and mmcv (versions of requirements/pinned.txt).
PROJECT_PACKAGES = ('openmim', 'mmengine', 'mmdet', 'mmsegmentation', 'ftfy', 'regex', 'numpy', 'opencv-python')


def sh(cmd, cwd=None, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    """Runs ``cmd``; fails the test with the tail of its output if it fails."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f'{cmd}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}'
    return proc


def mmcv_wheel() -> str:
    """The mmcv wheel ``scripts/setup_env.sh`` built for this Python and torch (it runs before the tests)."""
    import torch
    tag = 'cp%d%d-torch%s' % (sys.version_info[0], sys.version_info[1], torch.__version__.split('+')[0])
    cache = os.environ.get('FDCLIP_WHEEL_CACHE', osp.expanduser('~/.cache/fdclip_mm/wheels'))
    wheels = glob.glob(osp.join(cache, tag, 'mmcv-2.1.0-*.whl'))
    assert wheels, f'no mmcv wheel in {osp.join(cache, tag)}: run scripts/setup_env.sh first'
    return wheels[0]


def pinned(names) -> list:
    pins = {}
    for line in open(PINS):
        line = line.split('#')[0].strip()
        for op in ('==', '<', '>'):
            if op in line:
                pins[line.split(op)[0].strip().lower()] = line
                break
    return [pins.get(name.lower(), name) for name in names]


def freeze(python: str) -> dict:
    lines = sh([python, '-m', 'pip', 'list', '--format=freeze']).stdout.splitlines()
    return dict(line.split('==', 1) for line in lines if '==' in line)


def pip_check(python: str) -> set:
    proc = subprocess.run([python, '-m', 'pip', 'check'], capture_output=True, text=True)
    return {line for line in proc.stdout.splitlines() if line and 'No broken requirements' not in line}


def checkout_files() -> set:
    """The checkout's files as git reports them (untracked and ignored included), caches left out."""
    out = sh(['git', 'status', '--porcelain', '--ignored', '--untracked-files=all'], cwd=REPO).stdout
    return {line for line in out.splitlines() if '__pycache__' not in line and '.pytest_cache' not in line}


@pytest.fixture(scope='module')
def user_project(tmp_path_factory):
    """A wheel of fdclip_mm ``mim install`` ed into a fresh environment that stands for an mmdet project."""
    if shutil.which('git') is None or not osp.isdir(osp.join(REPO, '.git')):
        pytest.skip('needs the git checkout (the test checks that building leaves it unchanged)')
    root = tmp_path_factory.mktemp('user_project')
    before_build = checkout_files()
    sh([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', root / 'dist', REPO])
    sh([sys.executable, 'setup.py', '-q', 'sdist', '-d', root / 'sdist'], cwd=REPO)
    assert checkout_files() == before_build, 'building the wheel or the sdist wrote into the checkout'
    wheel = glob.glob(str(root / 'dist' / 'fdclip_mm-*.whl'))[0]
    sdist = glob.glob(str(root / 'sdist' / 'fdclip_mm-*.tar.gz'))[0]
    sh([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', root / 'from_sdist',
        sdist
    ])
    from_sdist = glob.glob(str(root / 'from_sdist' / 'fdclip_mm-*.whl'))[0]
    with zipfile.ZipFile(wheel) as direct, zipfile.ZipFile(from_sdist) as rebuilt:
        assert sorted(direct.namelist()) == sorted(rebuilt.namelist())  # the sdist carries configs and tools
        assert 'fdclip_mm/.mim/configs/fd/metafile.yml' in direct.namelist()

    venv = root / 'venv'
    sh([sys.executable, '-m', 'venv', venv])
    python = str(venv / 'bin' / 'python')
    pip = [python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check']
    sh(pip + pinned(['torch', 'torchvision']))
    sh(pip + [mmcv_wheel()])
    sh(pip + pinned(PROJECT_PACKAGES))
    installed, conflicts = freeze(python), pip_check(python)
    assert installed['setuptools'].startswith('60.'), installed['setuptools']  # openxlab's pin: an older one

    proc = sh([venv / 'bin' / 'mim', 'install', wheel])
    after = freeze(python)
    return dict(
        root=root,
        venv=venv,
        python=python,
        wheel=wheel,
        install=proc,
        installed=installed,
        after=after,
        conflicts=conflicts)


def test_mim_install_changes_nothing_the_project_had(user_project):
    before, after = user_project['installed'], user_project['after']
    changed = {name: (version, after.get(name)) for name, version in before.items() if after.get(name) != version}
    assert not changed, f'the install changed packages of the project: {changed}'
    assert 'fdclip_mm' in after and 'mmpretrain' in after  # what it adds
    assert pip_check(user_project['python']) <= user_project['conflicts']
    mim = str(user_project['venv'] / 'bin' / 'mim')
    listed = sh([mim, 'list']).stdout  # mim shows the normalised distribution name
    assert re.search(rf'^fdclip-mm\s+{re.escape(fdclip_mm.__version__)}\s*$', listed, flags=re.M), listed
    found = sh([mim, 'search', 'fdclip_mm', '--valid-config']).stdout
    assert 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k' in found


@pytest.fixture(scope='module')
def project_dir(user_project):
    """A folder holding the libraries' own tools (copied from the installed packages), tiny data, the configs."""
    work = user_project['root'] / 'project'
    site = sh([
        user_project['python'], '-c', 'import mmdet, mmseg, mmpretrain, os.path as p; '
        'print(" ".join(p.dirname(m.__file__) for m in (mmdet, mmseg, mmpretrain)))'
    ]).stdout.split()
    for lib, path in zip(('mmdet', 'mmseg', 'mmpretrain'), site):
        shutil.copytree(osp.join(path, '.mim', 'tools'), work / f'{lib}_tools')
    write_coco(str(work / 'coco'), num_images=2)
    write_ade_folder(str(work / 'ade' / 'ADEChallengeData2016'), count=2, size=(56, 56))
    for split in ('train', 'val'):
        write_labelled_folder(str(work / 'digits' / split), per_class=1, seed=0)
    for name, text in (('mask_rcnn_inheriting.py', MMDET_INHERITING_CONFIG), ('mask_rcnn_own_bases.py',
                                                                              MMDET_OWN_BASES_CONFIG),
                       ('upernet_inheriting.py', MMSEG_INHERITING_CONFIG), ('finetune_inheriting.py',
                                                                            MMPRETRAIN_INHERITING_CONFIG)):
        (work / name).write_text(textwrap.dedent(text))
    return work


# One image through an inferencer of the libraries (``{inferencer}`` imports it as ``Inferencer``).
INFERENCE_SCRIPT = '''
import glob
import fdclip_mm  # noqa: F401
{inferencer}
image = sorted(glob.glob({image!r}))[0]
result = Inferencer({config!r}, {weights}, device='cpu')(image, **({{}} if 'Classification' in Inferencer.__name__
                                                                 else dict(out_dir='inferred')))
predictions = result if isinstance(result, list) else result['predictions']
print('predictions:', len(predictions) if isinstance(predictions, list) else 1)
'''


def run_in_project(user_project, project_dir, *args) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PATH=f"{user_project['venv'] / 'bin'}:"
        f"{os.environ.get('PATH', '')}")
    env.pop('PYTHONPATH', None)
    return sh([*args], cwd=project_dir, env=env)


def test_mmdet_tools_and_mim_run_configs_inheriting_ours_and_using_our_modules(user_project, project_dir):
    python = user_project['python']
    run_in_project(user_project, project_dir, python, 'mmdet_tools/train.py', 'mask_rcnn_inheriting.py', '--work-dir',
                   'mmdet_inheriting')
    assert osp.isfile(project_dir / 'mmdet_inheriting' / 'iter_2.pth')
    run_in_project(user_project, project_dir, python, 'mmdet_tools/train.py', 'mask_rcnn_own_bases.py', '--work-dir',
                   'mmdet_own_bases')
    assert glob.glob(str(project_dir / 'mmdet_own_bases' / 'iter_*.pth'))
    mim = str(user_project['venv'] / 'bin' / 'mim')
    run_in_project(user_project, project_dir, mim, 'train', 'mmdet', 'mask_rcnn_inheriting.py', '--work-dir',
                   'mim_mmdet')
    tested = run_in_project(user_project, project_dir, mim, 'test', 'mmdet', 'mask_rcnn_inheriting.py', '--checkpoint',
                            'mim_mmdet/iter_2.pth', '--work-dir', 'mim_mmdet_test')
    # two iterations detect nothing yet (mmdet's CocoMetric logs an empty result): the run is what is tested
    assert 'Iter(test) [2/2]' in tested.stdout and 'Testing finished successfully' in tested.stdout
    # mmdet's DetInferencer (what its demo/image_demo.py runs) on a config inheriting ours, with the trained weights
    inferred = run_in_project(
        user_project, project_dir, python, '-c',
        INFERENCE_SCRIPT.format(
            inferencer='from mmdet.apis import DetInferencer as Inferencer',
            config='mask_rcnn_inheriting.py',
            weights="weights='mmdet_inheriting/iter_2.pth'",
            image='coco/val2017/*.jpg'))
    assert 'predictions: 1' in inferred.stdout and glob.glob(str(project_dir / 'inferred' / 'vis' / '*.jpg'))


def test_mmseg_and_mmpretrain_tools_run_configs_inheriting_ours(user_project, project_dir):
    python = user_project['python']
    run_in_project(user_project, project_dir, python, 'mmseg_tools/train.py', 'upernet_inheriting.py', '--work-dir',
                   'mmseg_inheriting')
    assert osp.isfile(project_dir / 'mmseg_inheriting' / 'iter_2.pth')
    run_in_project(user_project, project_dir, python, 'mmpretrain_tools/train.py', 'finetune_inheriting.py',
                   '--work-dir', 'mmpretrain_inheriting')
    assert osp.isfile(project_dir / 'mmpretrain_inheriting' / 'epoch_1.pth')
    # the libraries' inferencers on the same configs and weights; our model index in mmpretrain's
    for inferencer, config, weights, image in (
        ('from mmseg.apis import MMSegInferencer as Inferencer', 'upernet_inheriting.py',
         "weights='mmseg_inheriting/iter_2.pth'", 'ade/ADEChallengeData2016/images/validation/*.jpg'),
        ('from mmpretrain import ImageClassificationInferencer as Inferencer', 'finetune_inheriting.py',
         "pretrained='mmpretrain_inheriting/epoch_1.pth'", 'digits/val/*/*.jpg'),
    ):
        inferred = run_in_project(
            user_project, project_dir, python, '-c',
            INFERENCE_SCRIPT.format(inferencer=inferencer, config=config, weights=weights, image=image))
        assert 'predictions: 1' in inferred.stdout, inferred.stdout
    listed = run_in_project(
        user_project, project_dir, python, '-c', 'import fdclip_mm, mmpretrain; '
        "print(mmpretrain.list_models('fd-clip-vit-b16_16xb128*'))")
    assert 'fd-clip-vit-b16_16xb128-100e_in1k' in listed.stdout


def test_mim_train_and_test_fdclip_mm_run_our_tools_from_the_wheel(user_project, project_dir):
    mim = str(user_project['venv'] / 'bin' / 'mim')
    proc = run_in_project(user_project, project_dir, mim, 'train', 'fdclip_mm', 'finetune_inheriting.py', '--work-dir',
                          'mim_fdclip_mm')
    assert osp.isfile(project_dir / 'mim_fdclip_mm' / 'epoch_1.pth')
    assert 'System environment' not in proc.stdout  # our CheckedRunner's quiet console: our tool ran
    tested = run_in_project(user_project, project_dir, mim, 'test', 'fdclip_mm', 'finetune_inheriting.py',
                            '--checkpoint', 'mim_fdclip_mm/epoch_1.pth', '--work-dir', 'mim_fdclip_mm_test')
    assert 'accuracy/top1' in tested.stdout
    # mim's distributed launch: 2 processes (gloo on a CPU-only machine), 5 images at batch 1 = 3 steps a rank
    run_in_project(user_project, project_dir, mim, 'train', 'fdclip_mm', 'finetune_inheriting.py', '--gpus', '2',
                   '--launcher', 'pytorch', '--work-dir', 'mim_fdclip_mm_dist', '--cfg-options',
                   'train_dataloader.batch_size=1')
    log = open(glob.glob(str(project_dir / 'mim_fdclip_mm_dist' / '*' / '*.log'))[0]).read()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log and 'Epoch(train) [1][3/3]' in log
