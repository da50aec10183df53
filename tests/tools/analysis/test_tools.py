"""tools/analysis scripts end to end on tiny models, and checkpoint loading at any level."""
import csv
import json
import os.path as osp

import numpy as np
import pytest
import torch
from torch import nn

from fdclip_mm.models.backbones import FDViT
from ...helpers.checkpoints import tiny_teacher_cfg, tiny_vit_arch
from ...helpers.scripts import load_script

TINY = tiny_vit_arch(32, 2, 2, mlp_ratio=2)
model_builder = load_script('tools/analysis/model_builder.py')
parse_model_spec = load_script('tools/analysis/model_spec.py').parse_model_spec


def load_tool(name):
    return load_script(f'tools/analysis/{name}.py')


@pytest.fixture
def configs(tmp_path):
    student = tmp_path / 'vit.py'
    student.write_text(f'model = dict(type="FDViT", arch={TINY}, img_size=28, patch_size=14)\n')
    teacher_cfg = tiny_teacher_cfg('dinov2', str(tmp_path / 'dinov2.pth'), patch=14, image=28)
    teacher = tmp_path / 'teacher.py'
    teacher.write_text(f'model = {teacher_cfg!r}\n')
    return str(student), str(teacher)


def test_model_spec_parsing():
    spec = parse_model_spec(['FD', 'a.py', 'b.pth', 'part=student', 'model.student.img_size=224'])
    assert (spec.label, spec.config, spec.checkpoint, spec.part) == ('FD', 'a.py', 'b.pth', 'student')
    assert spec.cfg_options == {'model.student.img_size': 224}
    with pytest.raises(ValueError):
        parse_model_spec(['FD'])


def test_checkpoint_loads_from_a_full_or_a_backbone_file(tmp_path, configs):
    source = FDViT(arch=TINY, img_size=28, patch_size=14)
    full, backbone = str(tmp_path / 'full.pth'), str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': {f'student.{k}': v for k, v in source.state_dict().items()}}, full)
    torch.save(source.state_dict(), backbone)
    x = torch.randn(1, 3, 28, 28)
    for path in (full, backbone):
        holder = nn.Module()
        holder.student = FDViT(arch=TINY, img_size=28, patch_size=14)
        assert model_builder.load_part_checkpoint(holder, holder.student, path)[1] == 0
        assert torch.allclose(holder.student.eval().forward_features(x), source.eval().forward_features(x))
    _, module = model_builder.build_analysis_module(configs[0], backbone)
    assert torch.allclose(module.forward_features(x), source.forward_features(x))


def test_attention_distance_and_maps_tools(tmp_path, configs, image_folder):
    out = str(tmp_path / 'out')
    models = ['--model', 'random ViT', configs[0], '--model', 'teacher', configs[1], 'part=self']
    paths = load_tool('attention_distance').main(
        [image_folder, '--out-dir', out, '--num-images', '3', '--batch-size', '2'] + models)
    with open(paths['csv']) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 and {r['model'] for r in rows} == {'random ViT', 'teacher'}
    with open(paths['json']) as f:
        table = json.load(f)
    assert table['teacher']['num_images'] == 3 and table['teacher']['grid'] == [2, 2]
    assert np.array(table['random ViT']['distances']).shape == (2, 2)
    assert osp.getsize(paths['png']) > 0
    written = load_tool('attention_maps').main([image_folder, '--out-dir', out, '--num-images', '2'] + models)
    maps = np.load(written['random ViT']['npy'])
    assert maps.shape == (2, 4, 4) and osp.getsize(written['teacher']['png']) > 0
    assert written['random ViT']['npy'].endswith('attention_maps_random_ViT.npy')


def test_cost_and_results_tools(tmp_path, capsys):
    numbers = load_tool('training_cost').main(['--paper', '--json', str(tmp_path / 'cost.json')])
    assert numbers['fraction'] == pytest.approx(0.03)
    assert '384M/12.8B = 3.0%' in capsys.readouterr().out
    run = tmp_path / 'ft' / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    (run / 'scalars.json').write_text(json.dumps({'accuracy/top1': 85.9, 'step': 1}) + '\n')
    table = load_tool('collect_results').main([
        '--layout', 'table3', '--row', 'A',
        str(tmp_path / 'ft'), '--row', 'B',
        str(tmp_path / 'ft'), '--columns', 'in1k'
    ])
    assert table.splitlines()[-1] == '| B | 85.9 (+0.0) |'
