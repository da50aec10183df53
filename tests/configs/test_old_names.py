"""Old config names kept loadable: a stub at the old path (``_base_`` = the renamed config, plus mmengine's
``_deprecation_`` that warns and names the new file) resolves to exactly the renamed config."""
import glob
import os.path as osp
import warnings
from pathlib import Path

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUBS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_deprecation_' in Path(p).read_text())


def test_the_readme_commands_of_earlier_versions_have_stubs():
    old_commands = {'fd_dinov2-vits14_vit-t14-6l_demo.py', 'fd_clip-vit-b16_vit-b16-dp0.2_16xb128-300e_in1k.py'}
    assert old_commands <= {osp.basename(p) for p in STUBS}


@pytest.mark.parametrize('stub', STUBS)
def test_old_name_resolves_to_the_new_config(stub):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        old = Config.fromfile(osp.join(REPO, stub))
    with open(osp.join(REPO, stub)) as f:
        text = f.read()
    said = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    said = [message for message in said if 'will be deprecated' in message]
    assert said, f'{stub}: mmengine did not warn'
    new = said[0].split('Please use ')[1].split(' instead')[0]
    assert osp.isfile(osp.join(REPO, new)) and osp.basename(new) in text, (stub, new)
    assert osp.dirname(new) == osp.dirname(stub), 'a stub stands beside the config it names'
    assert old.to_dict() == Config.fromfile(osp.join(REPO, new)).to_dict()
