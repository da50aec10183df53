"""Code style: the checks of .pre-commit-config.yaml, run over the whole repository by `make test` (that is, CI).

flake8, isort (``--check-only``), yapf (``--diff``) and codespell read their settings from setup.cfg; each runs
once over all files (the four at the same time), and a failing test shows the tool's own report. The file
checks of pre-commit-hooks (trailing whitespace, end of file, YAML) are done here in Python. The files are
those git lists (tracked, or new and not ignored); without git, those found under the repository minus the
ignored folders. To fix what fails: ``pre-commit run --all-files`` (see .pre-commit-config.yaml).
"""
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: never checked: environments, outputs, data (the excludes of .pre-commit-config.yaml)
EXCLUDED_DIRS = ('.git', '.venv', 'work_dirs', 'data', 'build', 'dist', 'docs/en/_build')
BINARY_SUFFIXES = ('.png', '.jpg', '.jpeg', '.gif', '.pth', '.pt', '.onnx', '.npz', '.npy', '.gz', '.zip', '.whl',
                   '.pdf', '.ico')


def _excluded(path: str) -> bool:
    return any(path == d or path.startswith(d + '/') for d in EXCLUDED_DIRS) or '__pycache__' in path.split('/')


def repository_files() -> List[str]:
    """Paths relative to the repository root, sorted."""
    try:
        out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'],
                             cwd=REPO,
                             capture_output=True,
                             check=True).stdout
        files = [f for f in out.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        files = []
        for root, dirs, names in os.walk(REPO):
            rel = osp.relpath(root, REPO).replace(os.sep, '/')
            rel = '' if rel == '.' else rel + '/'
            dirs[:] = [d for d in dirs if not _excluded(rel + d) and not d.endswith('.egg-info')]
            files += [rel + n for n in names]
    return sorted(f for f in files if not _excluded(f) and osp.isfile(osp.join(REPO, f)))


def text_files(files: List[str]) -> List[str]:
    """The files that are not binary (pre-commit's ``types: [text]``)."""
    texts = []
    for f in files:
        if f.lower().endswith(BINARY_SUFFIXES):
            continue
        with open(osp.join(REPO, f), 'rb') as fh:
            if b'\0' not in fh.read(8192):
                texts.append(f)
    return texts


@pytest.fixture(scope='module')
def files() -> List[str]:
    return repository_files()


@pytest.fixture(scope='module')
def tool_runs(files) -> Dict[str, subprocess.Popen]:
    """The four tools, started together (yapf, the slowest, on all cores), each over all of its files."""
    python = [f for f in files if f.endswith('.py')]
    assert python, 'no Python files found'
    commands = {
        'flake8': ['flake8', *python],
        'isort': ['isort', '--check-only', '--diff', *python],
        'yapf': ['yapf', '--diff', '--parallel', *python],
        'codespell': ['codespell_lib', *text_files(files)],
    }
    runs = {}
    for name, (module, *args) in commands.items():
        runs[name] = subprocess.Popen([sys.executable, '-m', module, *args],
                                      cwd=REPO,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT,
                                      env=dict(os.environ, PYTHONWARNINGS='ignore'))
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.parametrize('tool', ['flake8', 'isort', 'yapf', 'codespell'])
def test_tool_passes(tool_runs, tool):
    out, _ = tool_runs[tool].communicate(timeout=300)
    report = out.decode(errors='replace').strip()
    if 'No module named' in report:
        pytest.fail(f'{tool} is not installed: install requirements/tests.txt (bash scripts/setup_env.sh)\n{report}')
    if tool == 'codespell':  # it prints the config files it read even when all is well
        report = '\n'.join(line for line in report.splitlines()
                           if line.strip() and line != 'Used config files:' and not line.strip()[0].isdigit())
    assert tool_runs[tool].returncode == 0, (
        f'{tool} fails (settings: setup.cfg; fix with `pre-commit run --all-files`):\n{report[-20000:]}')


def test_text_files_are_clean(files):
    """pre-commit-hooks' trailing-whitespace (two spaces allowed at the end of a Markdown line), end-of-file-fixer
    (a non-empty file ends with exactly one newline), mixed-line-ending (LF) and check-yaml."""
    problems = []
    for f in text_files(files):
        with open(osp.join(REPO, f), 'rb') as fh:
            data = fh.read()
        if not data:
            continue
        if b'\r' in data:
            problems.append(f'{f}: carriage returns (use LF line endings)')
        if not data.endswith(b'\n') or data.endswith(b'\n\n') or not data.strip():
            problems.append(f'{f}: must end with exactly one newline')
        markdown = f.endswith('.md')
        for number, line in enumerate(data.split(b'\n'), 1):
            stripped = line.rstrip()
            if line == stripped or (markdown and stripped and line == stripped + b'  '):
                continue
            problems.append(f'{f}:{number}: trailing whitespace')
        if f.endswith(('.yml', '.yaml')):
            try:
                list(yaml.safe_load_all(data))
            except yaml.YAMLError as e:
                problems.append(f'{f}: not valid YAML: {e}')
    assert not problems, 'fix with `pre-commit run --all-files`:\n' + '\n'.join(problems)
