"""The commands of ``docs/en/user_guides/released_models.md``, run as the page gives them, on stand-in files.

The stand-ins are files of the released layout at the released shapes (a distilled and a fine-tuned FD-CLIP ViT-B/16,
random weights) in a folder laid out as the page says (``data/weights/official``, a 4-image ``data/imagenet``), next
to links to ``configs/`` and ``tools/``. The converters, ``tools/test.py``, ``fd_to_classifier.py`` and both
Python blocks run exactly as written; the ImageNet fine-tuning command runs with two extra options that make it one
short epoch (the stand-in ImageNet has 4 images); the dense-task commands are checked for what the page claims of
them: their config starts from the converted backbone file, which loads into its backbone with no missing or
unexpected tensor (their training loops run in ``tests/configs`` at tiny size).
"""
import os
import os.path as osp
import runpy
import shlex
import subprocess
import sys
from typing import List

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from ..converters.official_fd_layout import distilled_state, official_vit_state, randomize_, write_official_file
from . import docs_text as dt

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): workspace is built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('test_released_models_page')]

PAGE = next(page for page in dt.pages() if page.rel == 'docs/en/user_guides/released_models.md')
COMMANDS = [shlex.split(line) for info, body in dt.fences(PAGE.text) if info == 'bash' for line in body.splitlines()]
PYTHON_BLOCKS = [body for info, body in dt.fences(PAGE.text) if info.split(' ')[0] == 'python']
DENSE_ROOTS = ('configs/mask_rcnn_coco/', 'configs/upernet_ade20k/', 'configs/depth_nyuv2/')
SHORT_RUN = ['--cfg-options', 'train_dataloader.batch_size=2', 'train_cfg.max_epochs=1']


def beit_b16(distilled: bool):
    from timm.models.beit import Beit
    model = Beit(
        qkv_bias=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=not distilled,
        use_shared_rel_pos_bias=distilled,
        init_values=0.1,
        num_classes=0 if distilled else 1000,
        global_pool='token' if distilled else 'avg')
    return randomize_(model)


def write_imagenet(root: str) -> None:
    """mmpretrain's ImageNet layout, 2 classes x 2 images per split, with the ``meta/*.txt`` lists."""
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'meta'))
    for split in ('train', 'val'):
        lines = []
        for label, wnid in enumerate(('n01440764', 'n01443537')):
            for i in range(2):
                name = f'{wnid}/{wnid}_{i}.JPEG'
                mmcv.imwrite(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), osp.join(root, split, name))
                lines.append(f'{name} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('released_models_page'))
    for name in ('configs', 'tools'):
        os.symlink(osp.join(dt.REPO, name), osp.join(root, name))
    official = osp.join(root, 'data', 'weights', 'official')
    os.makedirs(official)
    write_official_file(osp.join(official, 'fd_finetune_clip_vit_b16.pth'), official_vit_state(beit_b16(False)))
    distilled = distilled_state(official_vit_state(beit_b16(True)), 768, None, 768)
    write_official_file(
        osp.join(official, 'fd_pretrain_clip_vit_b16.pth'), distilled, {'DEV': {
            'PRED_FEAT': 'CLIP_400M'
        }})
    write_imagenet(osp.join(root, 'data', 'imagenet'))
    y, x = np.mgrid[0:180, 0:240]
    photo = np.stack([(x * 1.3) % 256, (y * 1.9) % 256, ((x + y) * 0.7) % 256], axis=-1).astype(np.uint8)
    mmcv.imwrite(photo, osp.join(root, 'photo.jpg'))
    return root


def run(argv: List[str], cwd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONWARNINGS='ignore')
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_in_process(argv: List[str], capsys) -> str:
    """``python SCRIPT ARGS`` in this process (as ``runpy`` runs a script, its folder first on ``sys.path``), for the
    converters; returns its output."""
    saved, folder = sys.argv, osp.dirname(osp.abspath(argv[1]))
    sys.argv = list(argv[1:])
    sys.path.insert(0, folder)
    try:
        runpy.run_path(argv[1], run_name='__main__')
    finally:
        sys.argv = saved
        sys.path.remove(folder)
    return capsys.readouterr().out


def test_the_page_has_the_commands_this_test_runs():
    tools = [argv[1] for argv in COMMANDS if argv[0] == 'python']
    assert tools.count('tools/model_converters/official_fd_to_mmpretrain.py') == 2
    assert {'tools/test.py', 'tools/model_converters/fd_to_classifier.py', 'tools/train.py'} <= set(tools)
    assert sum(argv[2].startswith(DENSE_ROOTS) for argv in COMMANDS if argv[1] == 'tools/train.py') == 3
    assert len(PYTHON_BLOCKS) == 2 and all(argv[0] == 'python' for argv in COMMANDS)


def test_every_command_of_the_page(workspace, monkeypatch, capsys):
    """In the page's order; the runners (``tools/test.py``, ``tools/train.py``) in processes of their own, the
    converters and the Python blocks in this one (the same code, without a process start each)."""
    monkeypatch.chdir(workspace)
    for argv in COMMANDS:
        tool, args = argv[1], list(argv[2:])
        if tool.startswith('tools/model_converters/'):
            out = run_in_process(argv, capsys)
            assert osp.isfile(osp.join(workspace, args[1]))
            if tool.endswith('official_fd_to_mmpretrain.py'):
                stage = 'fine-tuned' if 'finetune' in args[0] else 'distilled'
                assert f'{stage} FD ViT-B/16 (teacher: ' in out.splitlines()[0], out
        elif tool == 'tools/train.py' and args[0].startswith(DENSE_ROOTS):
            dense_config_starts_from_the_converted_backbone(workspace, args[0])
        else:
            extra = SHORT_RUN if tool == 'tools/train.py' else []
            done = run([sys.executable, tool, *args, *extra], workspace)
            assert done.returncode == 0, f'{" ".join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}'
            if tool == 'tools/test.py':
                assert 'accuracy/top1' in done.stdout + done.stderr
    assert osp.isfile(osp.join(workspace, 'work_dirs', 'fd-clip-vit-b16_in1k', 'epoch_1.pth'))
    for index, body in enumerate(PYTHON_BLOCKS):
        namespace = {}
        exec(compile(body, f'python block {index} of {PAGE.rel}', 'exec'), namespace)
        if 'tokens' in namespace:
            assert namespace['tokens'].shape == (1 + 196, 768)
        else:
            assert 0 <= namespace['result']['pred_label'] < 1000


def dense_config_starts_from_the_converted_backbone(workspace: str, config: str) -> None:
    from mmengine.registry import MODELS
    cfg = Config.fromfile(osp.join(workspace, config))
    backbone = cfg.model.backbone
    assert backbone.init_cfg.checkpoint == 'data/weights/fd/fd-clip-vit-b16_backbone.pth', config
    backbone.init_cfg.checkpoint = osp.join(workspace, backbone.init_cfg.checkpoint)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(backbone)
    model.init_weights()  # FDViT loads its init file exactly: any missing or unexpected tensor raises
    converted = torch.load(backbone.init_cfg.checkpoint, weights_only=True)['state_dict']
    torch.testing.assert_close(model.layers[3].attn.qkv.weight, converted['layers.3.attn.qkv.weight'])
