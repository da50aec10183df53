"""tools/reproduce.py --quick end to end on tiny stand-ins for Fashion-MNIST and DINOv2 (no network).

Checks the report's structure, that every number in it is read from the file it links to, and that a second
invocation skips every finished stage.
"""
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ..helpers.checkpoints import dinov2_state_dict

pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LINK = re.compile(r'\[(-?\d+(?:\.\d+)?)\]\(([^)]+)\)')


def tiny_fashion_mnist(root: str) -> None:
    """The layout scripts/fetch_fashion_mnist.py writes, with random grey 28 x 28 images."""
    rng = np.random.default_rng(0)
    lists = {'unlabelled': ('train', 320), 'labelled_1k': ('train', 160), 'val': ('train', 64), 'test': ('test', 200)}
    for name, (split, count) in lists.items():
        folder = osp.join(root, 'images', split)
        lines = []
        for i in range(count):
            label = i % 10
            image = (rng.integers(0, 60, (28, 28)) + 19 * label).astype(np.uint8)
            path = osp.join(folder, f'{name}_{i:05d}.png')
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image, mode='L').save(path)
            lines.append(f'{split}/{name}_{i:05d}.png {label}\n')
        os.makedirs(osp.join(root, 'meta'), exist_ok=True)
        with open(osp.join(root, 'meta', f'{name}.txt'), 'w') as f:
            f.writelines(lines)


def numbers_in(path: str):
    """Every number in a JSON / JSON-lines file, or in a text log."""
    with open(path) as f:
        text = f.read()
    return [float(x) for x in re.findall(r'-?\d+(?:\.\d+)?(?:e-?\d+)?', text)]


def reproduce(*args, cwd=REPO):
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', 'reproduce.py'), '--quick', *args],
                          cwd=cwd,
                          capture_output=True,
                          text=True)


def test_quick_reproduction_end_to_end(tmp_path):
    data = str(tmp_path / 'fashion_mnist')
    tiny_fashion_mnist(data)
    teacher = str(tmp_path / 'dinov2.pth')
    torch.save(dinov2_state_dict(hidden=64, layers=2, patch=14, image=56), teacher)
    work = str(tmp_path / 'reproduce')
    args = ['--work-dir', work, '--data-root', data, '--teacher', teacher, '--stages', 'main', 'matched', 'report']
    first = reproduce(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    report = open(osp.join(work, 'REPORT.md')).read()
    for heading in ('## Learning rate', '## Fine-tuning at the chosen lr', '## Frozen features', '## Ablations',
                    '## Attention distance per layer', '## Wall time per stage'):
        assert heading in report
    links = LINK.findall(report)
    assert len(links) > 30
    for value, path in links:
        source = osp.join(work, path)
        assert osp.isfile(source), path
        digits = len(value.split('.')[1]) if '.' in value else 0
        assert any(round(x, digits) == float(value) for x in numbers_in(source)), (value, path)
    rows = {line.split('|')[1].strip(): line for line in report.splitlines() if line.startswith('| ')}
    fine_tuned = report.split('## Fine-tuning at the chosen lr')[1].split('##')[0]
    grid = report.split('## Learning rate')[1].split('##')[0]
    for row in ('4-layer FDViT, scratch (random init)', '4-layer FDViT, FD (distilled from DINOv2)',
                'DINOv2 ViT-S/14 itself (the teacher)', 'FDViT-S/14 (matched), FD (distilled)',
                'FDViT-S/14 (matched), scratch (random init)'):
        line = next(line for line in fine_tuned.splitlines() if line.startswith(f'| {row} |'))
        assert '(1 seed)' in line and 'not run' not in line, line
        line = next(line for line in grid.splitlines() if line.startswith(f'| {row} |'))
        assert line.count('](') == 3 and 'not run' not in line, line  # two lrs (--quick) and the choice
    assert 'not run' in rows['no whitening']  # ablations were not asked for

    # the lr is chosen on validation alone, and only the chosen lr is tested
    for row in ('scratch', 'fd', 'teacher', 'fd-s', 'scratch-s'):
        with open(osp.join(work, 'finetune', row, 'chosen_lr.json')) as f:
            choice = json.load(f)
        best = max(choice['grid'].values(), key=lambda entry: (entry['val_top1'], -entry['lr']))
        assert choice['chosen'] == best['lr'] and set(choice['grid']) == {'lr1e-04', 'lr1e-03'}
        tested = glob.glob(osp.join(work, 'finetune', row, 'lr*', 'seed*', 'test', 'metrics_file'))
        assert [osp.basename(osp.dirname(osp.dirname(osp.dirname(t)))) for t in tested] == [f'lr{best["lr"]:.0e}']
    with open(osp.join(work, 'frozen', 'frozen_features.json')) as f:
        assert set(json.load(f)) == {'DINOv2 teacher', 'FD student', 'random init'}
    with open(osp.join(work, 'frozen', 'frozen_features_matched.json')) as f:
        assert set(json.load(f)) == {'FD-S student', 'random init S'}
    # the matched student has the teacher's architecture (here the tiny stand-in's: width 64, 2 layers)
    student = torch.load(osp.join(work, 'weights', 'fd_matched_cls.pth'), map_location='cpu')
    student = student.get('state_dict', student)
    assert student['backbone.patch_embed.projection.weight'].shape[0] == 64
    assert not any('layers.2.' in key for key in student)
    assert osp.isfile(osp.join(work, 'analysis', 'attention_distance.png'))

    second = reproduce(*args)
    assert second.returncode == 0
    assert '[run]' not in second.stdout and second.stdout.count('[skip]') >= 20

    # a training stage cut short (no 'trained' mark) runs again with --resume from its last checkpoint: the run of
    # a row's chosen lr (a rerun does not revisit the other lrs of a grid whose choice is made)
    marks = sorted(glob.glob(osp.join(work, 'finetune', '*', 'lr*', 'seed0', 'trained')))
    assert marks and all(open(m).read().strip().endswith('.pth') for m in marks)
    with open(osp.join(work, 'finetune', 'fd', 'chosen_lr.json')) as f:
        mark = osp.join(work, 'finetune', 'fd', f'lr{json.load(f)["chosen"]:.0e}', 'seed0', 'trained')
    os.remove(mark)
    third = reproduce(*args)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert third.stdout.count('[run]') == 1 and '--resume' in third.stdout and 'resumed epoch' in third.stdout
    assert osp.isfile(mark)


def test_missing_inputs_are_named(tmp_path):
    result = reproduce('--work-dir', str(tmp_path / 'w'), '--data-root', str(tmp_path / 'nowhere'))
    assert result.returncode != 0 and 'scripts/fetch_fashion_mnist.py' in result.stderr + result.stdout


def load_reproduce_tool():
    """tools/reproduce.py as a module (it imports tools/reproduction_report.py from beside itself)."""
    tools = osp.join(REPO, 'tools')
    sys.path.insert(0, tools)
    try:
        spec = importlib.util.spec_from_file_location('fdclip_tools_reproduce', osp.join(tools, 'reproduce.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(tools)
    return module


def test_lr_is_chosen_on_validation_and_again_when_the_grid_changes(tmp_path, monkeypatch):
    tool = load_reproduce_tool()
    validation = {'lr3e-05': 60.0, 'lr1e-04': 71.0, 'lr3e-04': 71.0, 'lr1e-03': 65.0}
    trained = []

    def fake_finetune(self, row, lr, seed, test):
        """Writes the validation accuracy mmengine would log for ``lr`` (no training)."""
        assert not test  # choosing never tests
        trained.append(tool.lr_name(lr))
        run_dir = self.path('finetune', row, tool.lr_name(lr), f'seed{seed}', '20261205_000000', 'vis_data')
        os.makedirs(run_dir, exist_ok=True)
        with open(osp.join(run_dir, 'scalars.json'), 'w') as f:
            f.write(json.dumps({'accuracy/top1': validation[tool.lr_name(lr)], 'step': 20}) + '\n')

    monkeypatch.setattr(tool.Reproduction, 'finetune', fake_finetune)
    monkeypatch.setattr(tool, 'LR_GRID', (1e-4, 1e-3))
    reproduction = tool.Reproduction(tool.parse_args(['--work-dir', str(tmp_path)]))
    assert reproduction.chosen_lr('teacher') == 1e-4 and trained == ['lr1e-04', 'lr1e-03']
    assert reproduction.chosen_lr('teacher') == 1e-4 and len(trained) == 2  # recorded: not chosen again

    monkeypatch.setattr(tool, 'LR_GRID', (3e-5, 1e-4, 3e-4, 1e-3))
    reproduction = tool.Reproduction(tool.parse_args(['--work-dir', str(tmp_path)]))
    assert reproduction.chosen_lr('teacher') == 1e-4  # the tie 1e-4 / 3e-4 goes to the smaller lr
    with open(osp.join(tmp_path, 'finetune', 'teacher', 'chosen_lr.json')) as f:
        choice = json.load(f)
    assert sorted(choice['grid']) == sorted(validation) and choice['grid']['lr3e-05']['val_top1'] == 60.0
