"""Building a model from a config (and optionally a checkpoint) for the analysis tools beside this module."""
import re
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import MODELS, init_default_scope
from torch import nn

import fdclip_mm  # noqa: F401  (registers our modules and the checkpoint types)
from fdclip_mm.analysis.attention_model import resolve_attention_module, unwrap
from fdclip_mm.checkpoint import read_state_dict
from fdclip_mm.engine import merge_cfg_options


def build_model_from_config(config: str, cfg_options: Optional[dict] = None) -> nn.Module:
    """The config's ``model`` built in its ``default_scope`` (``fdclip_mm`` when unset), in eval mode.

    Args:
        config: Config file path. Its ``model`` may be a whole algorithm (distiller, classifier) or a bare
            backbone / teacher.
        cfg_options: Overrides merged into the config (``--cfg-options``).
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'fdclip_mm'))
    return MODELS.build(cfg.model).eval()


def _state_dict(checkpoint: str) -> Dict[str, torch.Tensor]:
    return {re.sub(r'^module\.', '', k): v for k, v in read_state_dict(checkpoint).items()}


def load_part_checkpoint(model: nn.Module, module: nn.Module, checkpoint: str) -> Tuple[int, int]:
    """Loads ``checkpoint`` into ``module`` (a part of ``model``) whatever level it was saved at.

    A full checkpoint of ``model`` (keys ``student.*``, ``backbone.*``...) is cut down to the part's keys;
    a backbone checkpoint (e.g. from ``fd_to_backbone.py``) is loaded as it is.

    Returns:
        (number of loaded tensors, number of the module's tensors left missing).

    Raises:
        ValueError: if no key of the checkpoint fits the module.
    """
    state = _state_dict(checkpoint)
    model = unwrap(model)
    prefix = next((f'{name}.' for name, child in model.named_children() if child is module), None)
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    if not set(state) & set(own):
        raise ValueError(f'{checkpoint}: none of its keys fits {type(module).__name__} '
                         f'(e.g. {sorted(state)[:3]} vs {sorted(own)[:3]})')
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        print_log(
            f'{checkpoint}: {len(missing)} missing keys {missing[:4]}, {len(unexpected)} unexpected '
            f'keys {unexpected[:4]}',
            logger='current')
    return len(state) - len(unexpected), len(missing)


def build_analysis_module(config: str,
                          checkpoint: Optional[str] = None,
                          part: str = 'auto',
                          cfg_options: Optional[dict] = None) -> Tuple[nn.Module, nn.Module]:
    """(model, the part to analyse) from a config and an optional checkpoint (random init without one)."""
    model = build_model_from_config(config, cfg_options)
    module = resolve_attention_module(model, part)
    if checkpoint:
        load_part_checkpoint(model, module, checkpoint)
    return model, module.eval()
