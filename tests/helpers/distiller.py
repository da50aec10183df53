"""A tiny feature distiller, its batches and its optimizer wrapper, and a loss made non-finite on purpose."""
import torch
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper

from fdclip_mm.models.algorithms import FeatureDistiller
from fdclip_mm.models.teachers import teacher_config
from .checkpoints import tiny_vit_arch

STUDENT_ARCH = tiny_vit_arch(48, 2, 2, mlp_ratio=2)


def build(teacher, **kwargs):
    """A tiny FDViT student under ``teacher``: a teacher config, or the path of a tiny CLIP checkpoint."""
    if isinstance(teacher, str):
        teacher = teacher_config('clip', teacher, arch=tiny_vit_arch(32, 2, 2), patch_size=8, img_size=32)
    student = dict(type='FDViT', arch=STUDENT_ARCH, img_size=32, patch_size=8, drop_path_rate=0.1)
    student.update(kwargs.pop('student', {}))
    return FeatureDistiller(student=student, teacher=teacher, **kwargs)


def batch(n=4, seed=0):
    """``n`` random 32 x 32 uint8 images as a data batch of ``inputs``."""
    gen = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8) for _ in range(n)])


def poison_loss(model, from_iter: int = 0) -> None:
    """Make ``model.loss`` return NaN (still in the graph) from runner iteration ``from_iter`` on."""
    real_loss = model.loss

    def loss(inputs, data_samples=None):
        losses = real_loss(inputs, data_samples)
        if (MessageHub.get_current_instance().get_info('iter') or 0) >= from_iter:
            losses['loss'] = losses['loss'] * float('nan')
        return losses

    model.loss = loss


def optim_wrapper(model, **options):
    """AdamW through the trainable-parameters constructor; ``options`` go to the wrapper."""
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            constructor='fdclip_mm.TrainableOptimWrapperConstructor',
            **options))


#: Fixed 32 x 32 inputs: the pipeline under which teacher targets can be cached.
PIPELINE = [
    dict(type='fdclip_mm.CheckedLoadImageFromFile'),
    dict(type='Resize', scale=(32, 32), backend='pillow'),
    dict(type='PackInputs')
]


def distill_config(teacher: dict, image_folder: str, work_dir: str, pipeline, cache: str) -> dict:
    """A 2-iteration run of a tiny distiller reading teacher targets from ``cache`` (on ``image_folder``)."""
    return dict(
        default_scope='mmpretrain',
        model=dict(
            type='fdclip_mm.FeatureDistiller',
            teacher=teacher,
            target_cache=cache,
            student=dict(
                type='FDViT',
                arch=dict(embed_dims=48, num_layers=2, num_heads=2, feedforward_channels=96),
                img_size=32,
                patch_size=8)),
        train_dataloader=dict(
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(
                type='RepeatDataset',
                times=2,
                dataset=dict(type='CustomDataset', data_root=image_folder, with_label=False, pipeline=pipeline))),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2), logger=dict(type='LoggerHook', interval=1)),
        work_dir=work_dir,
        randomness=dict(seed=0),
        log_level='INFO')
