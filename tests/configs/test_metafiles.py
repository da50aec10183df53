"""The model zoo: every config a user trains is in a metafile, ``model-index.yml`` imports them all, and each
config folder's README has a table that agrees with its metafile.

The metafiles follow mmpretrain's format (``Collections`` and ``Models``; ``Config`` and the collection's
``README`` relative to the repository root, as in mmpretrain, mmdet and mmseg). Where a model has ``Results``,
its ``Metadata`` says where they come from: ``Results Source: reported by the paper (...)`` for the numbers of
the paper (arXiv 2205.14141), ``Results Source: reported by the authors for their released ... model (...)`` for
the top-1 the FD authors published with a released model (the entry then says where the model comes from under
``Converted From``, as mmpretrain's converted models do), ``Results Source: measured by fdclip_mm (README ...,
DATE, MACHINE)`` for our own runs.
"""
import glob
import math
import os.path as osp
import re
from pathlib import Path
from typing import Dict, List

import pytest
import yaml
from modelindex.load_model_index import load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_MARK = 'reported by the paper'
AUTHORS_MARK = 'reported by the authors for their released'
OFFICIAL_CODE = 'https://github.com/SwinTransformer/Feature-Distillation'
MEASURED_MARK = 'measured by fdclip_mm'
# Folders whose results are the paper's, and folders whose results are our own measurements.
PAPER_FOLDERS = ('fd', 'finetune_in1k', 'mask_rcnn_coco', 'upernet_ade20k', 'depth_nyuv2')
MEASURED_FOLDERS = ('reproduce', 'demo')


def trained_configs() -> List[str]:
    """Every config under ``configs/`` outside ``_base_`` folders, relative to the repository root; old names
    kept loadable (``_deprecation_`` stubs, tests/configs/test_old_names.py) are not models of their own."""
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, REPO) for p in paths
        if '_base_' not in osp.relpath(p, REPO).split(osp.sep) and '_deprecation_' not in Path(p).read_text())


def metafile_paths() -> List[str]:
    return sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))


def read_yaml(path: str) -> dict:
    with open(osp.join(REPO, path)) as f:
        return yaml.safe_load(f)


def all_models() -> List[dict]:
    """Every ``Models`` entry of every metafile, with the metafile's path under ``_metafile``."""
    models = []
    for path in metafile_paths():
        for model in read_yaml(path)['Models']:
            models.append(dict(model, _metafile=path))
    return models


def folder_of(config: str) -> str:
    """``configs/fd/x.py`` -> ``fd``."""
    return config.split('/')[1]


def test_every_config_in_exactly_one_metafile_entry():
    """Each trained config has one ``Config:`` entry in all metafiles together, and each entry names an
    existing config of the metafile's own folder."""
    entries: Dict[str, List[str]] = {}
    for model in all_models():
        entries.setdefault(model['Config'], []).append(model['_metafile'])
        assert osp.dirname(model['Config']) == osp.dirname(model['_metafile']), \
            f"{model['_metafile']}: {model['Config']} belongs in its own folder's metafile"
    configs = trained_configs()
    missing = [c for c in configs if c not in entries]
    assert not missing, f'configs in no metafile: {missing}'
    repeated = {c: files for c, files in entries.items() if len(files) > 1}
    assert not repeated, f'configs in more than one metafile entry: {repeated}'
    stale = [c for c in entries if c not in configs]
    assert not stale, f'metafile entries for configs that do not exist (or live in a _base_ folder): {stale}'


def test_model_names_are_the_config_names():
    """As in mmpretrain, a model is named after its config file; names are unique across the model index."""
    names = [m['Name'] for m in all_models()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for model in all_models():
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0], model['Name']


def test_model_index_imports_every_metafile():
    """``model-index.yml`` imports exactly the folders' metafiles, and every folder with configs has one."""
    imports = read_yaml('model-index.yml')['Import']
    assert sorted(imports) == metafile_paths()
    assert len(imports) == len(set(imports))
    folders = sorted({folder_of(c) for c in trained_configs()})
    assert [folder_of(p) for p in metafile_paths()] == folders


def test_modelindex_loads_without_errors():
    """modelindex (what ``mim search`` reads) loads the index with every model in a known collection and
    nothing malformed. modelindex resolves a collection's ``README`` against the metafile's folder,
    OpenMMLab's metafiles (and ours) write it from the repository root; that one message is accepted when the
    file exists there."""
    index = load(osp.join(REPO, 'model-index.yml'))
    assert len(index.models) == len(trained_configs())
    readme_error = re.compile(r'Path to README file (\S+) is not a valid file\.$')
    errors = []
    for error in index.check(silent=True):
        found = readme_error.search(error)
        if found and osp.isfile(osp.join(REPO, found.group(1))):
            continue
        errors.append(error)
    assert not errors, '\n'.join(errors)
    for model in index.models:
        assert model.in_collection in {c.name for c in index.collections}, model.name


def test_collections():
    """One collection per metafile, with the paper, a README that exists (from the repository root, like
    ``Config``) and code that exists in this repository."""
    for path in metafile_paths():
        data = read_yaml(path)
        collections = data['Collections']
        assert len(collections) == 1, path
        collection = collections[0]
        assert collection['README'] == osp.join(osp.dirname(path), 'README.md'), path
        assert collection['Paper'] == dict(
            Title='Improving CLIP Fine-tuning Performance', URL='https://arxiv.org/abs/2205.14141'), path
        assert osp.isfile(osp.join(REPO, collection['Code']['URL'])), collection['Code']
        assert {'Training Data', 'Architecture', 'Training Techniques'} <= set(collection['Metadata']), path
        assert all(m['In Collection'] == collection['Name'] for m in data['Models']), path


def test_no_weights_without_a_release():
    """We host no weights, so no entry may point to any; the authors' released files are named under
    ``Converted From`` (with the official code), as mmpretrain names the originals of converted models."""
    assert not [m['Name'] for m in all_models() if 'Weights' in m]


def test_released_models_are_the_converters_configs():
    """The ten released files are named by the entries of the configs the converter names for them (distillation
    config for a distilled file, fine-tuning config for a fine-tuned one), each with the official code."""
    from fdclip_mm.converters.official_fd import CONFIGS
    expected = sorted(osp.splitext(osp.basename(c))[0] for pair in CONFIGS.values() for c in pair)
    converted = [m for m in all_models() if 'Converted From' in m]
    assert sorted(m['Name'] for m in converted) == expected
    for model in converted:
        origin = model['Converted From']
        assert set(origin) == {'Weights', 'Code'} and origin['Code'] == OFFICIAL_CODE, model['Name']
        assert re.fullmatch(r'https://drive\.google\.com/file/d/[\w-]+/view\?usp=sharing', origin['Weights'])
    assert len({m['Converted From']['Weights'] for m in converted}) == 10


def test_results_say_where_they_come_from():
    """The paper's configs carry only numbers reported by the paper, marked so; the small-scale reproduction
    and the demos carry only our measurements, with the README section, date and machine they come from."""
    folders = {folder_of(c) for c in trained_configs()}
    unclassified = folders - set(PAPER_FOLDERS) - set(MEASURED_FOLDERS)
    assert not unclassified, f'say whether the results of {unclassified} are the paper\'s or ours'
    for model in all_models():
        results, meta = model.get('Results'), model['Metadata']
        source = meta.get('Results Source')
        if not results:
            assert source is None, f"{model['Name']}: a results source without results"
            continue
        assert source, f"{model['Name']}: Results without a 'Results Source'"
        for result in results:
            assert set(result) == {'Task', 'Dataset', 'Metrics'}, model['Name']
            assert result['Metrics'] and all(isinstance(v, (int, float)) for v in result['Metrics'].values())
        if source.startswith(AUTHORS_MARK):
            assert 'Converted From' in model and 'commit 2115145' in source, model['Name']
            assert 'not reproduced here' in source, model['Name']
        elif folder_of(model['Config']) in PAPER_FOLDERS:
            assert source.startswith(PAPER_MARK) and 'arXiv 2205.14141' in source, model['Name']
            assert 'not reproduced here' in source, model['Name']
        else:
            assert source.startswith(MEASURED_MARK), model['Name']
            page = re.search(r'(docs/en/\S+\.md)(?: "([^"]+)")?', source)
            assert page, f"{model['Name']}: name the docs page (and section) of the measurement"
            text = open(osp.join(REPO, page[1])).read()
            assert page[2] is None or re.search(r'^#+ ' + re.escape(page[2]) + '$', text, re.M), page[0]
            assert re.search(r'\d{4}-\d{2}-\d{2}', source), f"{model['Name']}: give the date of the run"


def test_downstream_names_exist():
    """``Downstream`` (mmpretrain's link from pre-training to fine-tuning configs) names known models."""
    names = {m['Name'] for m in all_models()}
    for model in all_models():
        unknown = set(model.get('Downstream', [])) - names
        assert not unknown, f"{model['Name']}: {unknown}"


def table_rows(readme: str) -> List[str]:
    with open(osp.join(REPO, readme)) as f:
        return [line for line in f.read().splitlines() if line.startswith('|')]


def numbers(text: str) -> List[float]:
    return [float(x) for x in re.findall(r'\d+(?:\.\d+)?', text)]


@pytest.mark.parametrize('folder', sorted({folder_of(c) for c in trained_configs()}))
def test_readme_table_matches_metafile(folder: str):
    """The folder's README has one table row per config, with that config's results and source kind."""
    readme = osp.join('configs', folder, 'README.md')
    assert osp.isfile(osp.join(REPO, readme)), f'{readme} is missing'
    rows = table_rows(readme)
    models = {m['Config']: m for m in all_models()}
    for config in (c for c in trained_configs() if folder_of(c) == folder):
        name = osp.basename(config)
        matching = [r for r in rows if f'`{name}`' in r]
        assert len(matching) == 1, f'{readme}: {len(matching)} table rows name {name}'
        cells = [cell.strip() for cell in matching[0].strip('|').split('|')]
        rest = ' | '.join(cells[1:])  # all but the config's own cell, whose name holds numbers too
        model = models.get(config)
        assert model is not None, f'{config} is in no metafile'
        shown = numbers(rest)
        for result in model.get('Results') or []:
            for metric, value in result['Metrics'].items():
                assert any(math.isclose(value, x, rel_tol=0, abs_tol=1e-9) for x in shown), \
                    f'{readme}: the row of {name} lacks {metric} {value} of the metafile'
        source = model['Metadata'].get('Results Source', '')
        kind = 'paper' if source.startswith(PAPER_MARK) else 'authors' if source.startswith(AUTHORS_MARK) \
            else 'measured' if source else ''
        assert cells[-1].split(' ')[0] == kind, f'{readme}: the row of {name} gives the source {cells[-1]!r}'


@pytest.mark.parametrize('folder', sorted({folder_of(c) for c in trained_configs()}))
def test_readme_paths_exist(folder: str):
    """Every repository path a folder README names (tools, scripts, configs) exists."""
    with open(osp.join(REPO, 'configs', folder, 'README.md')) as f:
        text = f.read()
    paths = set(re.findall(r'(?<![\w/.-])((?:tools|scripts|configs)/[\w./-]+\.(?:py|sh))', text))
    paths |= {osp.join('configs', folder, p) for p in re.findall(r'\]\(([\w.-]+\.py)\)', text)}
    assert paths
    missing = sorted(p for p in paths if not osp.isfile(osp.join(REPO, p)))
    assert not missing, missing
