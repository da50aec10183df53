"""Keys of the distiller's earlier layouts, renamed to today's by teacher name (at any prefix)."""
from fdclip_mm.models.algorithms.legacy_keys import rename_legacy_keys


def test_projectors_by_index_and_the_single_projector_become_branches_by_name():
    state = {
        'model.student.cls_token': 0,
        'model.projectors.0.weight': 1,
        'model.projectors.1.bias': 2,
        'model.projectors.2.weight': 3,  # no third teacher: left for the load to name as unexpected
        'other.projectors.0.weight': 4,  # another prefix: not this distiller's
    }
    rename_legacy_keys(state, 'model.', ['clip', 'dino'])
    assert state == {
        'model.student.cls_token': 0,
        'model.branches.clip.projector.weight': 1,
        'model.branches.dino.projector.bias': 2,
        'model.projectors.2.weight': 3,
        'other.projectors.0.weight': 4,
    }
    single = {'projector.weight': 5, 'projector.bias': 6, 'branches.t0.projector.weight_extra': 7}
    rename_legacy_keys(single, '', ['t0'])
    assert single == {
        'branches.t0.projector.weight': 5,
        'branches.t0.projector.bias': 6,
        'branches.t0.projector.weight_extra': 7
    }
