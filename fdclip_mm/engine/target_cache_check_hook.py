"""Checks, before training, that a distiller's teacher-target cache fits the run's pipeline and images."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from fdclip_mm.models.algorithms.teacher_target_cache import dataset_image_paths, training_pipeline
from fdclip_mm.registry import HOOKS


@HOOKS.register_module()
class TargetCacheCheckHook(Hook):
    """Refuses a run whose model reads a teacher-target cache that does not fit its training data.

    A cache holds the teacher's tokens of one fixed view per image; a run whose training pipeline differs
    from the one the cache was written with (a random crop or flip added, another size) would regress other
    views onto those targets without any error. Before the first step, this hook compares the run's training
    pipeline (``train_dataloader.dataset``'s config, through dataset wrappers) with the cache's, checks that
    every training image is in the cache, marks the cache as checked (the distiller refuses an unchecked one)
    and logs once which cache the run reads. Models without a cache are left alone.

    ``fdclip_mm.CheckedRunner`` and ``fdclip_mm.CheckedFlexibleRunner`` register it; with another runner add
    ``custom_hooks = [dict(type='fdclip_mm.TargetCacheCheckHook')]``.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        cache = getattr(model, 'target_cache', None)
        if cache is None or cache.checked:
            return
        dataset_cfg = (runner.cfg.get('train_dataloader') or {}).get('dataset')
        pipeline = training_pipeline(dataset_cfg) if dataset_cfg is not None else None
        if pipeline is None:
            raise ValueError(f'target_cache={cache.path!r}: the run\'s config has no train_dataloader.dataset '
                             'pipeline to check the cache against')
        dataset = runner.train_dataloader.dataset
        cache.check_run(dataset_image_paths(dataset), pipeline)
        runner.logger.info(
            f'Teacher targets come from {cache.path} ({len(cache)} images, {cache.token_shape[0]} tokens of '
            f'{cache.token_shape[1]} channels each, teacher {cache.meta.get("teacher_checkpoint")}): the teacher '
            'does not run in training steps; validation runs it')
