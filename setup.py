"""Installs fdclip_mm with its ``.mim`` extension.

The ``.mim`` folder inside the package holds ``configs/`` and ``tools/`` so that ``mim`` and mmengine's
``_base_ = 'fdclip_mm::fd/...'`` find them from another project. An editable install (``pip install -e .``
or ``mim install -e .``) links them; a normal install copies them.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import setup

MIM_FILES = ('configs', 'tools', 'model-index.yml')


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


def add_mim_extension() -> None:
    """Links (editable / develop) or copies (install / wheel) the mim files into ``fdclip_mm/.mim``."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build', 'build_py')):
        mode = 'copy'
    else:
        return
    here = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(here, 'fdclip_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(here, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, osp.dirname(dst)), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require=dict(tests=parse_requirements('requirements/tests.txt')),
        package_data={'fdclip_mm': ['.mim/configs/**/*', '.mim/tools/**/*', '.mim/model-index.yml']},
    )
