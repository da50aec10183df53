"""Reading a distillation config's epochs, dataset size and teacher for the cost accounting."""
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from fdclip_mm.analysis.training_cost import IMAGENET1K_TRAIN_IMAGES, TEACHER_PRETRAIN_IMAGES, DistillationCost


def train_batch_size(cfg: Config) -> int:
    """Images per iteration per process (``train_dataloader.batch_size``)."""
    return int(cfg.train_dataloader.batch_size)


def dataset_size(cfg: Config) -> int:
    """Length of the config's training dataset, built in its default scope.

    A dataset that cannot be built here (e.g. ImageNet not on disk) of type ``ImageNet`` counts as
    ImageNet-1K's 1,281,167 training images.

    Raises:
        RuntimeError: if the dataset cannot be built and is not ImageNet.
    """
    from mmengine.registry import DATASETS, init_default_scope

    import fdclip_mm  # noqa: F401
    init_default_scope(cfg.get('default_scope', 'fdclip_mm'))
    dataset_cfg = cfg.train_dataloader.dataset
    try:
        return len(DATASETS.build(dataset_cfg))
    except Exception as error:  # a missing dataset raises whatever its loader raises
        if str(dataset_cfg.get('type', '')).split('.')[-1] == 'ImageNet':
            print_log(
                f'ImageNet is not readable here ({type(error).__name__}); counting ImageNet-1K\'s '
                f'{IMAGENET1K_TRAIN_IMAGES} training images',
                logger='current')
            return IMAGENET1K_TRAIN_IMAGES
        raise RuntimeError(f'cannot build the training dataset to count it ({error}); pass --dataset-size')


def teacher_pretrain_images(cfg: Config) -> Optional[float]:
    """Pre-training images of the config's teacher when the supplement states them (CLIP: 12.8B)."""
    teacher = cfg.model.get('teacher') or {}
    return TEACHER_PRETRAIN_IMAGES.get(teacher.get('reader'))


def cost_from_config(cfg: Config,
                     images_per_epoch: Optional[float] = None,
                     teacher_images: Optional[float] = None) -> DistillationCost:
    """:class:`DistillationCost` of a config (``train_cfg.max_epochs`` x dataset size)."""
    return DistillationCost(
        epochs=float(cfg.train_cfg.max_epochs),
        images_per_epoch=float(images_per_epoch if images_per_epoch is not None else dataset_size(cfg)),
        teacher_images=teacher_images if teacher_images is not None else teacher_pretrain_images(cfg))
