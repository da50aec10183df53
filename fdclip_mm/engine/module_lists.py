"""The repeated blocks of a model, found from its structure (what compilation and sharding work on)."""
from typing import Iterator, Tuple

from torch import nn


def innermost_module_lists(module: nn.Module, prefix: str = '') -> Iterator[Tuple[str, nn.ModuleList]]:
    """(name, list) for every ``nn.ModuleList`` of ``module`` whose items hold no ``nn.ModuleList``: a ViT's
    blocks, a Swin stage's blocks, a distiller's projectors. A list of lists (a Swin's stages) is not one."""
    for name, child in module.named_modules(prefix=prefix):
        if isinstance(child, nn.ModuleList) and not any(
                isinstance(inner, nn.ModuleList) for item in child for inner in item.modules()):
            yield name, child
