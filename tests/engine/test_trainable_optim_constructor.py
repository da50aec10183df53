"""TrainableOptimWrapperConstructor: frozen modules stay out of the optimizer, the RPB decay option, the checked
wrapper by default."""
import torch
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch import nn

from fdclip_mm.engine import CheckedOptimWrapper


class Distiller(nn.Module):
    """A trainable student with a relative position bias table, and a frozen teacher."""

    def __init__(self):
        super().__init__()
        self.student = nn.Linear(4, 4)
        self.student.relative_position_bias_table = nn.Parameter(torch.zeros(5, 2))
        self.teacher = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.teacher.requires_grad_(False)


def build(**cfg):
    cfg.setdefault('optimizer', dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    return build_optim_wrapper(Distiller(), dict(constructor='fdclip_mm.TrainableOptimWrapperConstructor', **cfg))


def decay_of(wrapper) -> dict:
    """Parameter shape -> weight decay of its group (the student's tensors have distinct shapes)."""
    return {tuple(p.shape): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}


def test_frozen_modules_are_left_out_of_the_groups():
    model = Distiller()
    wrapper = build_optim_wrapper(
        model,
        dict(
            constructor='fdclip_mm.TrainableOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0.)))
    # mmengine's constructor adds a group (and a warning) for each frozen parameter of the teacher
    params = [p for g in wrapper.optimizer.param_groups for p in g['params']]
    assert len(wrapper.optimizer.param_groups) == len(params) == 3
    assert {id(p) for p in params} == {id(p) for p in model.student.parameters()}


def test_rel_pos_bias_decay_mult_sets_the_tables_decay_only():
    assert decay_of(build()) == {(4, 4): 0.05, (4, ): 0.05, (5, 2): 0.05}  # the official code decays them
    exempt = decay_of(build(paramwise_cfg=dict(rel_pos_bias_decay_mult=0)))
    assert exempt == {(4, 4): 0.05, (4, ): 0.05, (5, 2): 0.}
    # a custom key the config sets for the tables wins
    custom = build(
        paramwise_cfg=dict(
            rel_pos_bias_decay_mult=0, custom_keys=dict(relative_position_bias_table=dict(decay_mult=0.5))))
    assert decay_of(custom)[(5, 2)] == 0.025


def test_the_wrapper_is_the_checked_one_unless_the_config_names_another():
    assert type(build()) is CheckedOptimWrapper
    assert type(build(type='OptimWrapper')) is OptimWrapper
