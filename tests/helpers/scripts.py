"""The repository's scripts (``tools/``, ``scripts/``, ``benchmarks/``) imported as modules."""
import importlib.util
import os.path as osp
import sys
import types

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_script(path: str) -> types.ModuleType:
    """The repository's script ``path`` (``'tools/...py'``, ``'scripts/...py'``) as a module, imported as
    ``python SCRIPT`` finds its imports: its folder first on ``sys.path``, so the helpers beside it import."""
    file = osp.join(REPO, path)
    folder = osp.dirname(file)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location('fdclip_script_' + path[:-3].replace('/', '_'), file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module
