"""Under DDP (2 gloo processes) a NaN on one rank stops every rank with the same error; nobody hangs."""
import subprocess
import sys
import textwrap

import pytest

from ..helpers.tools import REPO, cpu_only, free_port, tool_env

pytestmark = pytest.mark.slow

RANK_SCRIPT = textwrap.dedent("""
    import os
    import sys
    import torch
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from tests.helpers.distiller import batch, build, optim_wrapper, poison_loss

    dist.init_process_group('gloo')
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = build(sys.argv[1]).train()
    optim = optim_wrapper(model)
    ddp = MMDistributedDataParallel(model, device_ids=None)
    ddp.train_step(batch(seed=rank), optim)  # a good step on both ranks
    if rank == 1:
        poison_loss(model)
    try:
        ddp.train_step(batch(seed=rank), optim)
        print(f'rank {rank}: updated', flush=True)
    except FloatingPointError as err:
        print(f'rank {rank}: {err}', flush=True)
    dist.barrier()  # both ranks got here: nobody hangs in the step
    os._exit(0)  # gloo/DDP teardown after an aborted step may abort the process; not what is tested here
""")


def run_two_ranks(script: str, checkpoint: str) -> list:
    """Runs ``script`` as ranks 0 and 1 of a gloo group; returns (returncode, stdout, stderr) per rank."""
    port = str(free_port())
    procs = [
        subprocess.Popen([sys.executable, '-c', script, checkpoint],
                         cwd=REPO,
                         env=tool_env(
                             repo_on_path=True, RANK=str(r), WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=port),
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         text=True) for r in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs)]


@cpu_only
def test_nan_on_one_rank_stops_all_ranks(tiny_clip_checkpoint):
    results = run_two_ranks(RANK_SCRIPT, tiny_clip_checkpoint)
    for rank, (returncode, out, err) in enumerate(results):
        assert returncode == 0, err[-3000:]
        assert f'rank {rank}: non-finite loss at' in out, out + err[-3000:]
    assert 'this rank: nan' in results[1][1] and 'this rank: nan' not in results[0][1]


SKIP_SCRIPT = textwrap.dedent("""
    import os
    import sys
    import torch
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from tests.helpers.distiller import batch, build, optim_wrapper, poison_loss

    dist.init_process_group('gloo')
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = build(sys.argv[1]).train()
    optim = optim_wrapper(model, nonfinite_loss='skip')
    ddp = MMDistributedDataParallel(model, device_ids=None)  # mmengine's own wrapper
    ddp.train_step(batch(seed=rank), optim)  # a good step on both ranks
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = {id(p): float(s['step']) for p, s in optim.optimizer.state.items()}
    real_loss = model.loss
    if rank == 1:
        poison_loss(model)
    ddp.train_step(batch(seed=rank), optim)  # both ranks skip
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert {id(p): float(s['step']) for p, s in optim.optimizer.state.items()} == steps
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    model.loss = real_loss
    ddp.train_step(batch(seed=rank), optim)  # DDP's reduction is in step again: a normal update
    weights = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    gathered = [torch.empty_like(weights) for _ in range(2)]
    dist.all_gather(gathered, weights)
    assert torch.equal(gathered[0], gathered[1])
    key = 'branches.t0.projector.weight'
    assert not torch.equal(model.state_dict()[key], before[key])
    print(f'rank {rank}: skipped {optim.skipped_nonfinite_steps}', flush=True)
    dist.barrier()
    dist.destroy_process_group()
""")


@cpu_only
def test_skip_under_mmengine_ddp_skips_on_every_rank_and_training_goes_on(tiny_clip_checkpoint):
    for rank, (returncode, out, err) in enumerate(run_two_ranks(SKIP_SCRIPT, tiny_clip_checkpoint)):
        assert returncode == 0, err[-3000:]
        assert f'rank {rank}: skipped 1' in out, out + err[-3000:]
