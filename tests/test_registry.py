"""Every registry of the ``fdclip_mm`` scope holds modules once its locations are imported."""
from mmengine.registry import Registry

from fdclip_mm import registry


def test_every_registry_of_the_scope_holds_a_module():
    ours = {name: reg for name, reg in vars(registry).items() if isinstance(reg, Registry) and reg.scope == 'fdclip_mm'}
    for reg in ours.values():
        reg.import_from_location()
    empty = sorted(name for name, reg in ours.items() if not reg.module_dict)
    assert len(ours) >= 10 and not empty, f'registries nothing registers into: {empty}'
