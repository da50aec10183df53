"""Installs fdclip_mm with its ``.mim`` extension.

The ``.mim`` folder inside the installed package holds ``configs/``, ``tools/`` and ``model-index.yml`` so that
``mim`` (``mim train fdclip_mm``, ``mim search fdclip_mm``) and mmengine's ``_base_ = 'fdclip_mm::fd/...'``
find them from another project. A wheel or regular install copies them into the build folder; an editable
install (``pip install -e .``, ``mim install -e .``) links them from ``fdclip_mm/.mim`` (git-ignored) to the
checkout.

Building never writes into the source tree: ``build/`` and ``*.egg-info`` go to a temporary folder (removed on
exit), so ``pip wheel`` / ``mim install`` of a checkout leaves it as it was.
"""
import atexit
import os
import os.path as osp
import shutil
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')
EDITABLE_COMMANDS = ('develop', 'editable_wheel')


def parse_requirements(fname: str) -> list:
    """Reads a requirements file, following ``-r`` includes and dropping comments."""
    requires = []
    with open(fname) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                requires += parse_requirements(osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                requires.append(line)
    return requires


def place_mim_files(package_dir: str, link: bool) -> None:
    """Puts the mim files into ``package_dir/.mim``: links to the checkout's, or copies of them."""
    mim_path = osp.join(package_dir, '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if link:
            os.symlink(osp.relpath(src, osp.dirname(dst)), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


class BuildPyWithMim(build_py):
    """``build_py`` that also copies the mim files into the built package (not into the source tree)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            place_mim_files(osp.join(self.build_lib, 'fdclip_mm'), link=False)


def out_of_tree_options() -> dict:
    """``build`` and ``egg_info`` folders in a temporary directory for non-editable builds."""
    if any(command in sys.argv for command in EDITABLE_COMMANDS):
        return {}
    scratch = tempfile.mkdtemp(prefix='fdclip_mm-build-')
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return {'build': {'build_base': osp.join(scratch, 'build')}, 'egg_info': {'egg_base': scratch}}


if __name__ == '__main__':
    if any(command in sys.argv for command in EDITABLE_COMMANDS):
        place_mim_files(osp.join(HERE, 'fdclip_mm'), link=True)
    setup(
        install_requires=parse_requirements(osp.join(HERE, 'requirements', 'runtime.txt')),
        extras_require=dict(tests=parse_requirements(osp.join(HERE, 'requirements', 'tests.txt'))),
        cmdclass={'build_py': BuildPyWithMim},
        options=out_of_tree_options(),
    )
