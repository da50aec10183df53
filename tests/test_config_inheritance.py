"""Configs of other projects inherit ours through mmengine's own parser, without importing fdclip_mm first."""
import subprocess
import sys
import textwrap

import pytest

import fdclip_mm
from fdclip_mm.config_inheritance import installed_config_dir

pytestmark = pytest.mark.slow


def test_base_config_names_installed_configs_only():
    import os.path as osp
    name = 'demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py'
    other = 'fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'
    assert fdclip_mm.base_config(name) == osp.join(installed_config_dir(), name)
    assert fdclip_mm.base_config(name, other) == [osp.join(installed_config_dir(), n) for n in (name, other)]
    with pytest.raises(FileNotFoundError, match=r"fdclip_mm has no config 'demo/nope.py' \(looked in .*configs\)"):
        fdclip_mm.base_config('demo/nope.py')
    with pytest.raises(ValueError, match='needs a config path'):
        fdclip_mm.base_config()


def test_an_unmodified_mmengine_parses_a_config_inheriting_ours(tmp_path):
    """A fresh interpreter with nothing of ours imported, as mmdet's tools/train.py parses a user's config."""
    (tmp_path / 'user.py').write_text(
        textwrap.dedent("""
        _base_ = __import__('fdclip_mm').base_config('demo/upernet_fdvit-t14-6l_labelme-ade.py')
        model = dict(backbone=dict(init_cfg=None))
    """))
    code = ('import sys; from mmengine.config import Config; assert "fdclip_mm" not in sys.modules; '
            'cfg = Config.fromfile(sys.argv[1]); '
            'print(cfg.model.backbone.type, cfg.model.backbone.init_cfg, cfg.custom_imports.imports)')
    proc = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'user.py')],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['fdclip_mm.FDViT', 'None', "['fdclip_mm']"]
    (tmp_path / 'scoped.py').write_text("_base_ = 'fdclip_mm::demo/upernet_fdvit-t14-6l_labelme-ade.py'\n")
    plain = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'scoped.py')],
                           capture_output=True,
                           text=True,
                           timeout=120)
    assert 'mmengine does not support to load fdclip_mm config' in plain.stderr  # why base_config exists
    # an editable install (this checkout's .venv) has the configs where base_config points, not in site-packages


def test_the_installed_config_folder_holds_the_repository_configs():
    import os.path as osp
    assert osp.isfile(osp.join(installed_config_dir(), 'fd', 'fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py'))


def readme_configs() -> list:
    """The Python blocks of the README's section on using fdclip_mm from another project."""
    import os.path as osp
    import re
    text = open(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'README.md')).read()
    section = text.split('## Use it from your own mmdet / mmseg / mmpretrain project')[1].split('\n## ')[0]
    return re.findall(r'```python\n(.*?)```', section, flags=re.S)


def test_the_readme_configs_for_other_projects_parse_and_build_with_an_unmodified_mmengine(tmp_path):
    blocks = readme_configs()
    assert len(blocks) == 2
    code = ('import sys; from mmengine.config import Config; assert "fdclip_mm" not in sys.modules; '
            'cfg = Config.fromfile(sys.argv[1]); print(cfg.model.backbone.type, cfg.model.neck[0].type); '
            'from mmengine.registry import init_default_scope; init_default_scope(cfg.default_scope); '
            'from mmdet.registry import MODELS; print(type(MODELS.build(cfg.model)).__name__)')
    for index, block in enumerate(blocks):
        path = tmp_path / f'readme_{index}.py'
        path.write_text(block)
        proc = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == ['fdclip_mm.FDViT', 'fdclip_mm.ViTPyramidNeck', 'MaskRCNN']
