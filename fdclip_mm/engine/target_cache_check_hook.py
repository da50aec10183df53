"""Checks, before training, that a distiller's teacher-target cache fits the run: pipeline, teacher, images."""
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from fdclip_mm.models.algorithms.teacher_target_cache import (TargetCacheMismatchError, dataset_image_paths,
                                                              training_pipeline)
from fdclip_mm.registry import HOOKS


@HOOKS.register_module()
class TargetCacheCheckHook(Hook):
    """Refuses a run whose model reads a teacher-target cache that does not fit it.

    A cache holds the teacher's tokens of one fixed view per image. A run would regress other targets than its
    teacher's without any error if its training pipeline differed from the one the cache was written with (a
    random crop or flip added, another size), if the cache came from another teacher (another checkpoint,
    architecture, input size or precision), or if an image changed after the cache was written. Before the first
    step, this hook compares all of it (:meth:`~fdclip_mm.models.algorithms.teacher_target_cache.
    TeacherTargetCache.mismatch`: the pipeline, the teacher's identity, every training image's presence, size,
    modification time and, where that changed, content), marks the cache as checked (the distiller refuses
    an unchecked one) and logs once which cache the run reads. Models without a cache are left alone.

    The files are read by rank 0 only (a job's other ranks get its verdict), so a job of many processes stats
    the data set once.

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
        verdict = [None]
        if is_main_process():
            verdict[0] = cache.mismatch(
                dataset_image_paths(runner.train_dataloader.dataset), pipeline, model.teacher_identity(),
                runner.cfg.filename or 'CONFIG')
        broadcast_object_list(verdict)
        if verdict[0] is not None:
            raise TargetCacheMismatchError(verdict[0])
        cache.checked = True
        teacher = cache.meta['teacher']
        runner.logger.info(
            f'Teacher targets come from {cache.path} ({len(cache)} images, {cache.token_shape[0]} tokens of '
            f'{cache.token_shape[1]} channels each, teacher {teacher["checkpoint"]} in {teacher["dtype"]}; '
            'the run\'s teacher, pipeline and images match it): the teacher does not run in training steps; '
            'validation runs it')
