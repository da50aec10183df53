"""Every command, path, registered type, make target, config and link of the README and of ``docs/en`` is real.

The pages are read as text (``docs_text.py``): paths and types are taken from code spans and code blocks,
commands from bash blocks and from code spans that start with ``python``, ``bash``, ``make`` or ``mim``.
Configs are loaded with ``mmengine.Config.fromfile`` (models are not built: the config tests build them shrunk).
Every Python tool answers ``--help``: all of them in one subprocess (one torch import), each one that fails
there retried in a process of its own.
"""
import ast
import importlib
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List

import pytest

from . import docs_text as dt

# one pytest-xdist worker takes the whole file (make test: --dist loadgroup): help_codes is built once
pytestmark = pytest.mark.xdist_group('test_docs_commands')

PAGES = dt.pages()
COMMANDS = [cmd for page in PAGES for cmd in dt.commands(page)]
ALL_PATHS = sorted({(path, page.rel) for page in PAGES for path in dt.paths(page.text)})
CONFIGS = sorted({cfg for page in PAGES for cfg in dt.config_files(page.text)})
NAMES = sorted({(name, page.rel) for page in PAGES for name in dt.our_names(page.text)})
LINKS = [(page.rel, target) for page in PAGES for target in dt.links(page)]
PYTHON_BLOCKS = [(page.rel, i, body) for page in PAGES for i, (info, body) in enumerate(dt.fences(page.text))
                 if info.split(' ')[0] == 'python']


def _help_tools() -> Dict[str, str]:
    """Python tools in commands, plus every named argparse script under tools/, scripts/ or benchmarks/."""
    tools = dt.python_tools(COMMANDS)
    for path, page in ALL_PATHS:
        if path.endswith('.py') and path.split('/')[0] in ('tools', 'scripts', 'benchmarks'):
            file = osp.join(dt.REPO, path)
            if osp.isfile(file) and 'ArgumentParser' in open(file, encoding='utf-8').read():
                tools.setdefault(path, page)
    return tools


HELP_TOOLS = _help_tools()

# Runs each script as `python SCRIPT --help` would (its folder first on sys.path), in one interpreter.
_HELP_RUNNER = r'''
import contextlib, io, json, os, runpy, sys
codes = {}
for tool in sys.argv[1:]:
    sys.argv = [tool, '--help']
    sys.path[0] = os.path.dirname(os.path.abspath(tool))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(tool, run_name='__main__')
        codes[tool] = 'returned without exiting'
    except SystemExit as exc:
        codes[tool] = exc.code or 0
    except BaseException as exc:
        codes[tool] = repr(exc)
print('HELP_CODES=' + json.dumps(codes))
'''


def _env() -> Dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')


@pytest.fixture(scope='module')
def help_codes() -> Dict[str, object]:
    """Exit code of ``SCRIPT --help`` for every tool, 0 where it printed its help."""
    tools = sorted(HELP_TOOLS)
    proc = subprocess.run([sys.executable, '-c', _HELP_RUNNER, *tools],
                          cwd=dt.REPO,
                          env=_env(),
                          capture_output=True,
                          text=True,
                          timeout=300)
    line = [x for x in proc.stdout.splitlines() if x.startswith('HELP_CODES=')]
    codes = json.loads(line[-1][len('HELP_CODES='):]) if line else {}
    for tool in tools:
        if codes.get(tool) != 0:  # retry alone: an earlier script's imports must not decide
            alone = subprocess.run([sys.executable, tool, '--help'],
                                   cwd=dt.REPO,
                                   env=_env(),
                                   capture_output=True,
                                   text=True,
                                   timeout=120)
            codes[tool] = alone.returncode if alone.returncode else 0
            if alone.returncode:
                codes[tool] = f'exit {alone.returncode}: {alone.stderr.strip()[-400:]}'
    return codes


def test_pages_found():
    rels = [page.rel for page in PAGES]
    assert rels[0] == 'README.md' and len(rels) > 20, rels
    assert HELP_TOOLS and CONFIGS and NAMES and LINKS and COMMANDS


@pytest.mark.parametrize('path,page', ALL_PATHS, ids=[p for p, _ in ALL_PATHS])
def test_path_exists(path: str, page: str):
    if path in dt.FOREIGN_PATHS:
        owner = dt.FOREIGN_PATHS[path]
        text = open(osp.join(dt.REPO, page), encoding='utf-8').read()
        assert f'{owner} `{path}`' in ' '.join(text.split()), f'{page}: {path} should be introduced as {owner}'
        return
    assert dt.resolve_path(path), f'{page} names {path}, which does not exist'


@pytest.mark.slow
@pytest.mark.parametrize('tool', sorted(HELP_TOOLS))
def test_python_tool_answers_help(tool: str, help_codes: Dict[str, object]):
    assert help_codes[tool] == 0, f'{HELP_TOOLS[tool]}: python {tool} --help -> {help_codes[tool]}'


@pytest.mark.parametrize('script', sorted(dt.shell_tools(COMMANDS)))
def test_shell_tool_is_executable_bash(script: str):
    file = osp.join(dt.REPO, script)
    assert osp.isfile(file), script
    assert os.access(file, os.X_OK), f'{script} is not executable'
    proc = subprocess.run(['bash', '-n', file], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_make_targets_exist():
    targets = dt.makefile_targets()
    named = dt.make_targets(COMMANDS)
    missing = {t: page for t, page in named.items() if t not in targets}
    assert not missing, f'make targets named in the docs but not in the Makefile: {missing}'
    assert {'demo', 'test', 'docs'} <= set(named)


def test_readme_test_command_is_make_test():
    """CI runs the README's test command: it stays ``make test``."""
    readme = PAGES[0]
    assert any(cmd.argv == ('make', 'test') for cmd in dt.commands(readme))
    assert any(cmd.argv == ('make', 'demo') for cmd in dt.commands(readme))


def _registered() -> Dict[str, List[str]]:
    """``{name: [registry, ...]}`` of every module our registries hold (lazy locations imported)."""
    from mmengine.registry import Registry

    from fdclip_mm import registry
    found: Dict[str, List[str]] = {}
    for attr in dir(registry):
        reg = getattr(registry, attr)
        if isinstance(reg, Registry):
            reg.import_from_location()
            for name in reg.module_dict:
                found.setdefault(name, []).append(reg.name)
    return found


@pytest.fixture(scope='module')
def registered() -> Dict[str, List[str]]:
    return _registered()


@pytest.mark.parametrize('name,page', NAMES, ids=[n for n, _ in NAMES])
def test_our_name_is_real(name: str, page: str, registered: Dict[str, List[str]]):
    """``fdclip_mm.X`` (a class name) is registered; ``fdclip_mm.a.b`` is an importable module or attribute."""
    import fdclip_mm
    if '.' not in name and name[0].isupper():
        assert name in registered, f'{page}: fdclip_mm.{name} is not in any fdclip_mm registry'
        return
    parts = ['fdclip_mm'] + name.split('.')
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f'{page}: fdclip_mm.{name} does not exist'
            obj = getattr(obj, attr)
        return
    pytest.fail(f'{page}: fdclip_mm.{name} cannot be imported ({fdclip_mm.__file__})')


def test_quoted_types_are_ours_or_the_libraries(registered: Dict[str, List[str]]):
    """Every ``'fdclip_mm.X'`` string of a config snippet names a registered module."""
    import re
    missing = []
    for page in PAGES:
        for code in dt.code_texts(page.text):
            for name in re.findall(r"['\"]fdclip_mm\.(\w+)['\"]", code):
                if name not in registered:
                    missing.append((page.rel, name))
    assert not missing, missing


@pytest.mark.parametrize('config', CONFIGS)
def test_config_named_loads(config: str):
    from mmengine import Config
    cfg = Config.fromfile(osp.join(dt.REPO, config))
    assert 'model' in cfg or '_base_' in cfg.filename or cfg.keys(), config


@pytest.mark.parametrize('page,index,body', PYTHON_BLOCKS, ids=[f'{p}#{i}' for p, i, _ in PYTHON_BLOCKS])
def test_python_snippet(page: str, index: int, body: str, tmp_path):
    """A config snippet that is a whole config (it has ``_base_``) loads; any other parses where complete."""
    try:
        ast.parse(body)
    except SyntaxError:
        assert '...' in body, f'{page}: python block {index} is not valid Python:\n{body}'
        return
    if '_base_' in body:
        from mmengine import Config
        file = tmp_path / 'snippet_config.py'
        file.write_text(body)
        cfg = Config.fromfile(str(file))
        assert 'model' in cfg, f'{page}: python block {index} loads without a model'


@pytest.mark.parametrize('page,target', LINKS, ids=[f'{p}->{t}' for p, t in LINKS])
def test_link_resolves(page: str, target: str):
    file, _, anchor = target.partition('#')
    path = osp.normpath(osp.join(dt.REPO, osp.dirname(page), file)) if file else osp.join(dt.REPO, page)
    assert osp.exists(path), f'{page}: link {target} -> {osp.relpath(path, dt.REPO)} does not exist'
    if anchor:
        assert path.endswith('.md'), f'{page}: anchor on a non-Markdown target {target}'
        text = open(path, encoding='utf-8').read()
        assert anchor in dt.anchors(text), f'{page}: {target}: no heading with anchor #{anchor}'
