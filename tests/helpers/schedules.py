"""The learning rates a config's ``param_scheduler`` gives, step by step."""
import torch


def scheduled_lrs(param_scheduler, param_groups, epoch_length: int, steps, batch_ratio: float = 1.0):
    """The lr of each group at each of ``steps`` (iterations) under a config's ``param_scheduler`` list.

    ``param_groups`` are dicts (``lr`` and optionally ``lr_scale``); ``batch_ratio`` multiplies every group's lr
    before the schedulers are built, as mmengine's ``Runner.scale_lr`` does for ``--auto-scale-lr``.
    """
    import copy

    from mmengine.registry import PARAM_SCHEDULERS, DefaultScope, init_default_scope
    groups = [dict(g, params=[torch.nn.Parameter(torch.zeros(1))]) for g in param_groups]
    optimizer = torch.optim.SGD(groups, lr=groups[0]['lr'])
    for group in optimizer.param_groups:
        group['lr'] *= batch_ratio
    schedulers = []
    with DefaultScope.overwrite_default_scope('mmengine'):
        init_default_scope('mmengine')
        import fdclip_mm  # noqa: F401
        for cfg in copy.deepcopy(param_scheduler):
            cfg = dict(cfg)
            if cfg.pop('convert_to_iter_based', False):
                cls = PARAM_SCHEDULERS.get(cfg.pop('type'))
                schedulers.append(cls.build_iter_from_epoch(optimizer, epoch_length=epoch_length, **cfg))
            else:
                schedulers.append(PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer)))
    wanted, out = set(steps), {}
    for step in range(max(steps) + 1):
        if step in wanted:
            out[step] = [g['lr'] for g in optimizer.param_groups]
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return [out[s] for s in steps]
