"""Training-cost accounting of feature distillation (supplement appendix A) and measured run cost."""
import glob
import json
import os.path as osp
import re
from dataclasses import dataclass
from typing import List, Optional

# Appendix A: "300 epochs ... 384M images (300 x 1.28M)"; "WIT-400M for 32 epochs, equal to 12.8B".
PAPER_EPOCHS = 300
PAPER_IMAGENET_IMAGES = 1.28e6
CLIP_PRETRAIN_IMAGES = 32 * 400e6
# ImageNet-1K's training split, for configs whose dataset is not on disk.
IMAGENET1K_TRAIN_IMAGES = 1_281_167
# Teachers whose pre-training images the supplement states (by the teacher's checkpoint reader in a config).
TEACHER_PRETRAIN_IMAGES = {'clip': CLIP_PRETRAIN_IMAGES}


@dataclass
class DistillationCost:
    """Images a distillation sees, relative to its teacher's pre-training.

    Attributes:
        epochs: Distillation epochs.
        images_per_epoch: Training images per epoch.
        teacher_images: Image instances of the teacher's pre-training (None when unknown).
    """
    epochs: float
    images_per_epoch: float
    teacher_images: Optional[float] = None

    @property
    def images_seen(self) -> float:
        return self.epochs * self.images_per_epoch

    @property
    def fraction(self) -> Optional[float]:
        """``images_seen / teacher_images`` (0.03 for the paper's settings)."""
        return None if not self.teacher_images else self.images_seen / self.teacher_images


def paper_cost() -> DistillationCost:
    """Appendix A: 300 x 1.28M = 384M images against CLIP's 32 x 400M = 12.8B, i.e. 3%."""
    return DistillationCost(PAPER_EPOCHS, PAPER_IMAGENET_IMAGES, CLIP_PRETRAIN_IMAGES)


@dataclass
class MeasuredRun:
    """Throughput and device time of a finished run, from its ``scalars.json`` and log.

    Attributes:
        iterations: Training iterations logged.
        train_seconds: Sum of the iteration times (data loading included, validation excluded).
        batch_size: Images per iteration per process.
        world_size: Processes (GPUs) of the run.
        device: ``'GPU'`` or ``'CPU'``.
    """
    iterations: int
    train_seconds: float
    batch_size: int
    world_size: int
    device: str

    @property
    def images_seen(self) -> int:
        return self.iterations * self.batch_size * self.world_size

    @property
    def throughput(self) -> float:
        """Images per second over all processes."""
        return self.images_seen / self.train_seconds

    @property
    def device_hours(self) -> float:
        """Wall-clock training hours x processes (GPU-hours on GPUs)."""
        return self.train_seconds * self.world_size / 3600


def latest_run_dir(work_dir: str) -> str:
    """The newest ``<timestamp>/`` directory of ``work_dir`` holding ``vis_data/scalars.json``.

    Raises:
        FileNotFoundError: if there is none.
    """
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no <timestamp>/vis_data/scalars.json under {work_dir}')
    return osp.dirname(osp.dirname(runs[-1]))


def read_train_times(scalars_path: str) -> List[dict]:
    """The training records (those with ``iter`` and ``time``) of an mmengine ``scalars.json``."""
    with open(scalars_path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'iter' in r and 'time' in r]


def train_seconds(records: List[dict]) -> float:
    """Sum of iteration times: each logged (window-averaged) time covers the iterations since the last one."""
    total, last_iter = 0.0, 0
    for record in sorted(records, key=lambda r: r['iter']):
        total += float(record['time']) * (int(record['iter']) - last_iter)
        last_iter = int(record['iter'])
    return total


def read_log_env(log_path: str) -> dict:
    """``world_size`` and ``device`` from the environment header mmengine writes at the top of its log."""
    with open(log_path) as f:
        head = f.read(20000)
    world = re.search(r'GPU number:\s*(\d+)', head)
    cuda = re.search(r'CUDA available:\s*(True|False)', head)
    return dict(
        world_size=int(world.group(1)) if world else 1, device='GPU' if cuda and cuda.group(1) == 'True' else 'CPU')


def measure_run(work_dir: str, batch_size: int) -> MeasuredRun:
    """Measured cost of the newest run in ``work_dir`` (``batch_size`` per process, from its config)."""
    run_dir = latest_run_dir(work_dir)
    records = read_train_times(osp.join(run_dir, 'vis_data', 'scalars.json'))
    if not records:
        raise ValueError(f'{run_dir}: scalars.json has no training records')
    logs = glob.glob(osp.join(run_dir, '*.log'))
    env = read_log_env(logs[0]) if logs else dict(world_size=1, device='CPU')
    iterations = max(int(r['iter']) for r in records)
    return MeasuredRun(iterations, train_seconds(records), batch_size, env['world_size'], env['device'])
