"""Building nested modules independently of the caller's default scope."""
import copy

from torch import nn

from fdclip_mm.registry import MODELS, SCOPE


def scoped(cfg: dict, scope: str = SCOPE) -> dict:
    """A deep copy of ``cfg`` that builds in ``scope`` unless it names its own (``_scope_`` or ``'lib.Type'``).

    A config whose ``default_scope`` is mmpretrain, mmdet or mmseg still finds the intended types, and
    ``type='mmpretrain.X'`` keeps working because scoped names are resolved from the root registry.
    """
    cfg = copy.deepcopy(dict(cfg))
    cfg.setdefault('_scope_', scope)
    return cfg


def build_model(cfg: dict, scope: str = SCOPE) -> nn.Module:
    """Builds ``cfg`` in ``scope`` (the ``fdclip_mm`` scope by default); see :func:`scoped`."""
    return MODELS.build(scoped(cfg, scope))
