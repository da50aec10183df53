"""Building nested modules independently of the caller's default scope."""
import copy

from torch import nn

from fdclip_mm.registry import MODELS, SCOPE


def build_model(cfg: dict) -> nn.Module:
    """Builds ``cfg`` in the ``fdclip_mm`` scope unless it names its own (``_scope_`` or ``'lib.Type'``).

    A config whose ``default_scope`` is mmpretrain, mmdet or mmseg still finds our types here, and
    ``type='mmpretrain.X'`` keeps working because scoped names are resolved from the root registry.
    """
    cfg = copy.deepcopy(dict(cfg))
    cfg.setdefault('_scope_', SCOPE)
    return MODELS.build(cfg)
