"""Runs that cannot train are refused by name: empty epochs, a run resumed past its end, FlexAttention on the CPU."""
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch.utils.data import DataLoader, TensorDataset

from fdclip_mm.engine.refusals import RunRefused, check_resumed_run, refuse_empty_epochs, refuse_flex_attention_on_cpu
from fdclip_mm.models.backbones import FDViT
from ..helpers.checkpoints import tiny_vit_arch


def loader(items: int, batch_size: int, drop_last: bool) -> DataLoader:
    dataset = TensorDataset(torch.zeros(items, 2))
    return DataLoader(dataset, batch_size=batch_size, drop_last=drop_last, sampler=DefaultSampler(dataset, False))


def test_an_epoch_of_no_iteration_is_refused_naming_the_dataset_and_the_batch():
    refuse_empty_epochs(loader(3, 4, drop_last=False))  # one short batch
    refuse_empty_epochs(loader(4, 4, drop_last=True))
    with pytest.raises(
            RunRefused,
            match=r'^train_dataloader gives 0 iterations per epoch: its dataset \(TensorDataset\) has 3 items, 3 per '
            r'process, fewer than train_dataloader.batch_size=4 with drop_last=True. Lower batch_size, set '
            r'train_dataloader.drop_last=False, or train on more data$'):
        refuse_empty_epochs(loader(3, 4, drop_last=True))
    with pytest.raises(RunRefused, match=r'has 0 items, 0 per process'):
        refuse_empty_epochs(loader(0, 4, drop_last=False))


def resumed_loop(loop_type, **state):
    """A loop of ``loop_type`` in the state a resume leaves it (``_epoch``, ``_max_epochs``, ...), unbuilt."""
    loop = object.__new__(loop_type)
    for name, value in state.items():
        setattr(loop, f'_{name}', value)
    return loop


def test_a_checkpoint_past_the_end_is_refused_and_one_at_the_end_is_described():
    epochs = dict(max_iters=30, iter=30)
    assert check_resumed_run(resumed_loop(EpochBasedTrainLoop, max_epochs=3, epoch=2, **epochs), 'epoch_2.pth') is None
    assert check_resumed_run(resumed_loop(EpochBasedTrainLoop, max_epochs=3, epoch=3, **epochs), 'epoch_3.pth') == (
        'epoch_3.pth: the run already finished at epoch 3 (train_cfg.max_epochs=3); raise max_epochs to continue it: '
        'nothing to train')
    with pytest.raises(
            RunRefused,
            match=r'^epoch_3.pth: the run already finished at epoch 3 beyond train_cfg.max_epochs=2; raise '
            'max_epochs to continue it$'):
        check_resumed_run(resumed_loop(EpochBasedTrainLoop, max_epochs=2, epoch=3, **epochs), 'epoch_3.pth')
    # an iteration-based loop keeps epoch 0 of max_epochs 1: only its iterations count
    iters = dict(max_epochs=1, epoch=0)
    with pytest.raises(RunRefused, match=r'finished at iteration 8 beyond train_cfg.max_iters=4; raise max_iters'):
        check_resumed_run(resumed_loop(IterBasedTrainLoop, max_iters=4, iter=8, **iters), 'iter_8.pth')
    assert 'iteration 8 (train_cfg.max_iters=8)' in check_resumed_run(
        resumed_loop(IterBasedTrainLoop, max_iters=8, iter=8, **iters), 'iter_8.pth')
    assert check_resumed_run(resumed_loop(IterBasedTrainLoop, max_iters=8, iter=4, **iters), 'iter_4.pth') is None


def test_flex_attention_is_refused_where_it_would_train_on_the_cpu():
    model = torch.nn.ModuleDict(
        dict(student=FDViT(arch=tiny_vit_arch(32, 1, 2), img_size=32, patch_size=8, attn_backend='flex')))
    refuse_flex_attention_on_cpu(model, 'cuda')
    with pytest.raises(
            RunRefused,
            match=r"^model.student.attn_backend='flex' \(student.layers.0.attn\): FlexAttention has no backward on "
            r"the CPU .*use model.student.attn_backend='auto'"):
        refuse_flex_attention_on_cpu(model, 'cpu')
    model.requires_grad_(False)  # a frozen module only runs forward, which FlexAttention has on the CPU
    refuse_flex_attention_on_cpu(model, 'cpu')
