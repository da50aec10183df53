"""Generator states: saved per rank in checkpoints, read back with weights_only, replayed where training goes on."""
import random
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.logging import MMLogger

from fdclip_mm.engine import RNGStateHook, get_rng_state, set_rng_state


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(np.random.randn())


def test_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    state = get_rng_state()
    torch.save({'rng_states': [state]}, tmp_path / 'ckpt.pth')
    expected = draws()
    draws()
    loaded = torch.load(tmp_path / 'ckpt.pth', weights_only=True)['rng_states'][0]
    set_rng_state(loaded)
    assert draws() == expected


def test_uninterrupted_and_resumed_runs_continue_from_the_saved_states():
    saver = RNGStateHook()
    saver.after_train_epoch(SimpleNamespace(iter=4))  # every rank, where the checkpoint hook saves
    checkpoint, best = {'meta': {'iter': 4}}, {'meta': {'iter': 4}}
    saver.before_save_checkpoint(None, checkpoint)  # rank 0 only; one process: a list of one state
    assert len(checkpoint['rng_states']) == 1
    expected = draws()
    saver.before_save_checkpoint(None, best)  # another checkpoint of the same iteration: same states
    assert best['rng_states'] is checkpoint['rng_states']
    saver.before_train_epoch(SimpleNamespace(iter=4))  # the run goes on: validation's draws are undone
    assert draws() == expected
    other = {'meta': {'iter': 5}}
    saver.before_save_checkpoint(None, other)  # no states captured for that iteration: none written
    assert 'rng_states' not in other

    loader = RNGStateHook()
    loader.after_load_checkpoint(None, checkpoint)  # load_from: the loop starts at 0, nothing restored
    loader.before_train_epoch(SimpleNamespace(iter=0))
    assert draws() != expected
    loader.after_load_checkpoint(None, checkpoint)  # resume at iteration 4
    loader.before_train_iter(SimpleNamespace(iter=4), 0)
    assert draws() == expected
    loader.before_train_iter(SimpleNamespace(iter=4), 0)  # replayed once only
    assert draws() != expected


def test_only_a_resume_logs_the_restored_states(capsys):
    MMLogger.get_instance(f'rng_{id(capsys)}')  # 'current' logger, printing to the captured stdout
    hook = RNGStateHook()
    hook.after_train_epoch(SimpleNamespace(iter=4))
    hook.before_train_epoch(SimpleNamespace(iter=4))  # the uninterrupted run: silent
    checkpoint = {'meta': {'iter': 4}}
    hook.before_save_checkpoint(None, checkpoint)
    assert 'Restored' not in capsys.readouterr().out
    resumed = RNGStateHook()
    resumed.after_load_checkpoint(None, checkpoint)
    resumed.before_train_epoch(SimpleNamespace(iter=4))
    assert 'Restored the random generator states of iteration 4 from the checkpoint' in capsys.readouterr().out


def test_iteration_based_checkpoints_capture_at_their_interval():
    from mmengine.hooks import CheckpointHook
    hook = RNGStateHook()
    hook.before_train(SimpleNamespace(hooks=[CheckpointHook(interval=2, by_epoch=False)]))
    hook.after_train_iter(SimpleNamespace(iter=0, max_iters=10), 0)  # iteration 1 is not saved
    checkpoint = {'meta': {'iter': 1}}
    hook.before_save_checkpoint(None, checkpoint)
    assert 'rng_states' not in checkpoint
    hook.after_train_iter(SimpleNamespace(iter=1, max_iters=10), 1)  # iteration 2 is
    checkpoint = {'meta': {'iter': 2}}
    hook.before_save_checkpoint(None, checkpoint)
    assert len(checkpoint['rng_states']) == 1
