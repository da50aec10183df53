"""benchmarks/gpu_check.sh end to end on the CPU at a tiny size, so that it is known to work before GPU time."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from ..helpers.config_lists import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / 'out'
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', FDCLIP_CPU_BF16='0')
    done = subprocess.run(
        ['bash', osp.join(REPO, 'benchmarks', 'gpu_check.sh'), '--device', 'cpu', '--tiny', '--out',
         str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    summary = (out / 'summary.md').read_text()
    assert done.returncode == 0, summary + done.stdout[-3000:] + done.stderr[-3000:]
    steps_table = summary.split('| step |')[1].split('\n\n')[0].splitlines()[2:]  # up to the benchmark tables
    rows = {line.split('|')[1].strip(): line.split('|')[2].strip() for line in steps_table}
    expected = [
        'env', 'flex_tests', 'fd_step_b2', 'attention', 'memory', 'train_fp16', 'train_bf16', 'resume_first_epoch',
        'resume', 'resume_equals_uninterrupted', 'torchrun_ddp', 'torchrun_fsdp2', 'data_pipeline', 'train_gpu_decode'
    ]
    assert [step for step in rows if step != 'mask_rcnn'] == expected
    assert all(rows[step] == 'ok' for step in expected) and rows['mask_rcnn'] == 'skipped'
    step = json.load(open(out / 'fd_step_b2.json'))
    assert {'fd_full_compiled_blocks', 'fd_full_compiled_model', 'stock_mmpretrain'} <= set(step['results'])
    assert json.load(open(out / 'resume.json'))['max_abs_weight_diff'] == 0.0
    assert json.load(open(out / 'memory.json'))['results'].keys() == {'fd_full', 'fd_full_cp', 'fd_full_compiled'}
    assert '| fd_device ' in summary and 'data preprocessor decoding batches of 2 on cpu' in summary
    # a device run brings back at most 8 files from $OUT
    assert len(os.listdir(out)) <= 8, os.listdir(out)
