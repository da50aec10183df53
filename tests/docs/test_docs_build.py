"""The documentation builds with Sphinx, warnings as errors (as ``make docs`` does), into a temporary folder."""
import os
import subprocess
import sys

import pytest

from .docs_text import DOCS

pytestmark = pytest.mark.slow


def test_sphinx_build_without_warnings(tmp_path):
    out = tmp_path / 'html'
    proc = subprocess.run([
        sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', '-d',
        str(tmp_path / 'doctrees'), DOCS,
        str(out)
    ],
                          env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore'),
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, f'sphinx-build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    for page in ('index.html', 'get_started.html', 'user_guides/own_project.html', 'api/models.html',
                 'notes/benchmarks.html'):
        assert (out / page).is_file(), page
    api = (out / 'api' / 'models.html').read_text(encoding='utf-8')
    assert 'FDViT' in api and 'BackboneTeacher' in api, 'autodoc documented no class of fdclip_mm.models'
