"""Key renames that let checkpoints of earlier versions of the distiller load."""


def rename_single_projector(state_dict: dict, prefix: str, *args) -> None:
    """A ``load_state_dict`` pre-hook: one-teacher distillers before ``teachers=[...]`` named
    their projector ``projector``; it is ``projectors.0`` since."""
    for key in [k for k in state_dict if k.startswith(prefix + 'projector.')]:
        state_dict[prefix + 'projectors.0.' + key[len(prefix + 'projector.'):]] = state_dict.pop(key)
