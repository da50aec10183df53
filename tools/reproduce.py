"""Small-scale reproduction of Feature Distillation on real data: Fashion-MNIST + the real DINOv2 ViT-S/14.

Every stage is an ordinary run of our tools (``tools/train.py``, ``tools/test.py``, the converters and the
analysis tools) on the configs in ``configs/reproduce/``; a stage whose output exists is skipped, and training
stages run with ``--resume`` (done once ``trained`` is written into their work dir), so an interrupted run
continues where it stopped, inside a training stage too. Stages, in order:

1. ``targets``: the teacher's tokens of the 10,000 distillation images, once (tools/cache_teacher_targets.py).
2. ``distill main``: FD into a 4-layer FDViT (shared RPB, whitened targets, full input).
3. ``finetune``: on 1,000 labelled images, 3 seeds each: ``scratch`` (random init), ``fd`` (the distilled
   student), ``teacher`` (DINOv2 itself, the reference; its seeds 1 and 2 run last, after the ablations, as
   each costs about as much as all ablations); each last checkpoint is tested on the 10,000 test images.
4. ``frozen``: 20-NN and linear probe on pooled tokens (train: the 1,000 labelled images; test: the test set)
   for the teacher, the FD student and the random-init student.
5. ``analysis``: attention distance per head (fig. 1) and average attention maps (figs. 2-4) on 64 test images
   for teacher, FD student, random init and the fine-tuned FD / scratch students.
6. ``ablations``: distillation without whitening, with APE, with per-layer RPB, with 25% input; each fine-tuned
   (seed 0) and tested like the FD row.

Then ``REPORT.md`` is written into the work dir: every number is a link to the log or JSON file it was read from.
``--stages`` runs a subset (e.g. ``--stages main`` = 1-5, ``--stages ablations``); the report covers whatever
exists. ``--quick`` shrinks every stage (a few hundred images, one or two epochs) for a check in a minute or two.

    python tools/reproduce.py                      # all of it (make reproduce)
    python tools/reproduce.py --stages main        # the main comparison only
    python tools/reproduce.py --quick --work-dir work_dirs/reproduce_quick
"""
import argparse
import functools
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

from reproduction_report import write_report  # tools/reproduction_report.py, beside this script

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

FD_CONFIG = 'configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist.py'
FT_CONFIG = 'configs/reproduce/finetune_fdvit-t14-4l_fmnist-1k.py'
TEACHER_FT_CONFIG = 'configs/reproduce/finetune_dinov2-vits14_fmnist-1k.py'
VARIANTS = {  # name: (distillation config, fine-tuning overrides for its student); ablations run in this order
    'main': (FD_CONFIG, []),
    'mask75': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_mask75.py', []),
    'no-whitening': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_no-whitening.py', []),
    'ape': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_ape.py', ['model.backbone.pos_embed=ape']),
    'rpb': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_rpb.py', []),
}
SEEDS = (0, 1, 2)
IMG_SIZE = 56
TRAINED_MARK = 'trained'  # written into a training stage's work dir once its run finished
STAGE_GROUPS = ('main', 'ablations', 'report')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/reproduce')
    parser.add_argument('--data-root', default='data/fashion_mnist', help='scripts/fetch_fashion_mnist.py output')
    parser.add_argument(
        '--teacher', default='data/demo/weights/dinov2_vits14.pth', help='DINOv2 weights (scripts/fetch_demo_data.py)')
    parser.add_argument('--stages', nargs='+', default=list(STAGE_GROUPS), choices=STAGE_GROUPS)
    parser.add_argument('--quick', action='store_true', help='a few hundred images, 1-2 epochs per stage')
    parser.add_argument('--threads', type=int, default=2, help='torch threads of every stage')
    return parser.parse_args(argv)


class Reproduction:
    """The stages of one reproduction run in ``work_dir``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work_dir = osp.abspath(args.work_dir)
        self.data_root = osp.abspath(args.data_root)
        self.teacher = osp.abspath(args.teacher)
        self.timings_path = osp.join(self.work_dir, 'timings.json')
        self.timings: Dict[str, float] = {}
        if osp.isfile(self.timings_path):
            with open(self.timings_path) as f:
                self.timings = json.load(f)
        self.seeds = SEEDS[:1] if args.quick else SEEDS
        self.distill_epochs = 1 if args.quick else None
        self.finetune_epochs = 2 if args.quick else None

    # ---------------------------------------------------------------------------------------- helpers
    def path(self, *parts: str) -> str:
        return osp.join(self.work_dir, *parts)

    def run_stage(self, name: str, output: str, command: List[str], after=None) -> None:
        """Runs ``command`` (a tool of this repository) unless ``output`` exists; records its wall time.

        ``after()``, if given, writes ``output`` once the command succeeded (for tools without an output file).
        """
        if osp.exists(output):
            print(f'[skip] {name}: {osp.relpath(output, self.work_dir)} exists', flush=True)
            return
        print(f'[run]  {name}: {" ".join(command)}', flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads))
        start = time.time()
        result = subprocess.run([sys.executable, *command], cwd=REPO, env=env)
        if result.returncode != 0:
            raise SystemExit(f'[error] stage {name} failed (exit {result.returncode}); fix it and rerun: '
                             'finished stages are kept')
        if after is not None:
            after()
        if not osp.exists(output):
            raise SystemExit(f'[error] stage {name} finished without writing {output}')
        self.timings[name] = round(time.time() - start, 1)
        with open(self.timings_path, 'w') as f:
            json.dump(self.timings, f, indent=1)

    def data_options(self) -> List[str]:
        """Point every loader at ``--data-root``; in quick mode also shrink them."""
        options = [
            f'{loader}.dataset.data_root={self.data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        ]
        if self.args.quick:
            options += [
                'train_dataloader.batch_size=32', 'val_dataloader.dataset.indices=64', 'train_dataloader.num_workers=0',
                'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False'
            ]
        return options

    @functools.cached_property
    def teacher_arch(self) -> dict:
        """The ViT arch of the ``--teacher`` file (ViT-S for the real DINOv2; tests give a smaller one)."""
        from fdclip_mm.converters.dinov2_weights import check_dinov2_state_dict, load_dinov2_checkpoint
        arch = check_dinov2_state_dict(load_dinov2_checkpoint(self.teacher), source=self.teacher)
        return dict(
            embed_dims=arch.embed_dims,
            num_layers=arch.depth,
            num_heads=arch.num_heads,
            feedforward_channels=arch.mlp_dims)

    def arch_options(self, backbone: str) -> List[str]:
        """``--cfg-options`` that give the backbone at ``backbone`` (a config key) the teacher's arch."""
        return [f'{backbone}.arch.{key}={value}' for key, value in self.teacher_arch.items()]

    def teacher_options(self) -> List[str]:
        """The FD configs' teacher: the ``--teacher`` file and its arch."""
        return [f'model.teacher.checkpoint={self.teacher}', *self.arch_options('model.teacher.backbone')]

    def distill_options(self) -> List[str]:
        options = self.data_options() + [
            *self.teacher_options(), f'model.target_cache={self.path("teacher_targets.pth")}'
        ]
        if self.args.quick:
            options += [
                'train_dataloader.dataset.indices=256', f'train_cfg.max_epochs={self.distill_epochs}',
                f'default_hooks.checkpoint.interval={self.distill_epochs}'
            ]
        return options

    def finetune_options(self, seed: int) -> List[str]:
        options = self.data_options() + [f'randomness.seed={seed}']
        if self.args.quick:
            options += [
                f'train_cfg.max_epochs={self.finetune_epochs}', f'train_cfg.val_interval={self.finetune_epochs}',
                f'default_hooks.checkpoint.interval={self.finetune_epochs}', 'train_dataloader.dataset.indices=128',
                'test_dataloader.dataset.indices=200'
            ]
        return options

    def checkpoint_of(self, run_dir: str) -> str:
        with open(osp.join(run_dir, 'last_checkpoint')) as f:
            return f.read().strip()

    def train(self, name: str, config: str, run_dir: str, options: List[str]) -> None:
        """A ``tools/train.py`` stage with ``--resume``: a rerun continues a run cut short (its checkpoints are
        kept); the stage is done once the run finished, which ``run_dir/trained`` records."""
        self.run_stage(
            name,
            osp.join(run_dir, TRAINED_MARK),
            ['tools/train.py', config, '--work-dir', run_dir, '--resume', '--cfg-options', *options],
            after=lambda: self.mark_trained(run_dir))

    def mark_trained(self, run_dir: str) -> None:
        """Writes ``run_dir/trained`` (the final checkpoint's path) after a training stage succeeded."""
        with open(osp.join(run_dir, TRAINED_MARK), 'w') as f:
            f.write(self.checkpoint_of(run_dir) + '\n')

    # ----------------------------------------------------------------------------------------- stages
    def targets(self) -> None:
        command = [
            'tools/cache_teacher_targets.py', FD_CONFIG, '--out',
            self.path('teacher_targets.pth'), '--batch-size', '128', '--cfg-options', *self.distill_options()
        ]
        command.remove(f'model.target_cache={self.path("teacher_targets.pth")}')
        self.run_stage('targets', self.path('teacher_targets.pth'), command)

    def distill(self, variant: str) -> str:
        config = VARIANTS[variant][0]
        run_dir = self.path('distill', variant)
        self.train(f'distill {variant}', config, run_dir, self.distill_options())
        weights = self.path('weights', f'fd_{variant}_cls.pth')
        self.run_stage(f'convert {variant}', weights, ['tools/model_converters/fd_to_classifier.py', run_dir, weights])
        return weights

    def teacher_weights(self) -> str:
        weights = self.path('weights', f'dinov2_cls_{IMG_SIZE}.pth')
        self.run_stage(
            'convert teacher', weights,
            ['tools/model_converters/dinov2_to_classifier.py', self.teacher, weights, '--img-size',
             str(IMG_SIZE)])
        return weights

    def finetune(self, row: str, seed: int, config: str, options: List[str]) -> None:
        run_dir = self.path('finetune', row, f'seed{seed}')
        self.train(f'finetune {row} seed {seed}', config, run_dir, [*self.finetune_options(seed), *options])
        test_dir = osp.join(run_dir, 'test')
        self.run_stage(
            f'test {row} seed {seed}',
            osp.join(test_dir, 'metrics_file'), [
                'tools/test.py', config,
                self.checkpoint_of(run_dir), '--work-dir', test_dir, '--cfg-options', *self.finetune_options(seed),
                *options
            ],
            after=lambda: mark_metrics_file(test_dir))

    def frozen(self) -> None:
        fd = self.checkpoint_of(self.path('distill', 'main'))
        limit = ['--num-train', '128', '--num-test', '200'] if self.args.quick else []
        common = self.teacher_options()
        self.run_stage('frozen features', self.path('frozen', 'frozen_features.json'), [
            'tools/analysis/frozen_features.py', '--data-prefix',
            osp.join(self.data_root, 'images'), '--train-ann',
            osp.join(self.data_root, 'meta', 'labelled_1k.txt'), '--test-ann',
            osp.join(self.data_root, 'meta', 'test.txt'), *limit, '--out',
            self.path('frozen', 'frozen_features.json'), '--model', 'DINOv2 teacher', FD_CONFIG, 'part=teacher',
            *common, '--model', 'FD student', FD_CONFIG, fd, 'part=student', *common, '--model', 'random init',
            FD_CONFIG, 'part=student', *common
        ])

    def analysis(self) -> None:
        fd = self.checkpoint_of(self.path('distill', 'main'))
        common = self.teacher_options()
        models = [
            ['--model', 'DINOv2 teacher', FD_CONFIG, 'part=teacher', *common],
            ['--model', 'FD student', FD_CONFIG, fd, 'part=student', *common],
            ['--model', 'random init', FD_CONFIG, 'part=student', *common],
            [
                '--model', 'FD fine-tuned', FT_CONFIG,
                self.checkpoint_of(self.path('finetune', 'fd', 'seed0')), 'part=backbone',
                'model.backbone.init_cfg=None'
            ],
            [
                '--model', 'scratch fine-tuned', FT_CONFIG,
                self.checkpoint_of(self.path('finetune', 'scratch', 'seed0')), 'part=backbone',
                'model.backbone.init_cfg=None'
            ],
        ]
        images = [
            osp.join(self.data_root, 'images', 'test'), '--num-images', '16' if self.args.quick else '64', '--out-dir',
            self.path('analysis'), '--batch-size', '16'
        ]
        flat = [token for model in models for token in model]
        self.run_stage('attention distance', self.path('analysis', 'attention_distance.json'),
                       ['tools/analysis/attention_distance.py', *images, *flat])
        self.run_stage('attention maps', self.path('analysis', 'attention_maps_FD_student.png'),
                       ['tools/analysis/attention_maps.py', *images, *flat])

    def run(self) -> str:
        for path, what in ((osp.join(self.data_root, 'meta', 'test.txt'), 'scripts/fetch_fashion_mnist.py'),
                           (self.teacher, 'scripts/fetch_demo_data.py')):
            if not osp.exists(path):
                raise SystemExit(f'[error] {path} is missing: run {what} first (make reproduce does)')
        os.makedirs(self.work_dir, exist_ok=True)
        stages = self.args.stages
        if 'main' in stages or 'ablations' in stages:
            self.targets()
        if 'main' in stages:
            fd_weights = self.distill('main')
            teacher_weights = self.teacher_weights()
            teacher_options = [
                f'model.backbone.init_cfg.checkpoint={teacher_weights}', *self.arch_options('model.backbone'),
                f'model.head.in_channels={self.teacher_arch["embed_dims"]}'
            ]
            for seed in self.seeds:
                self.finetune('scratch', seed, FT_CONFIG, ['model.backbone.init_cfg=None'])
                self.finetune('fd', seed, FT_CONFIG, [f'model.backbone.init_cfg.checkpoint={fd_weights}'])
            self.finetune('teacher', self.seeds[0], TEACHER_FT_CONFIG, teacher_options)
            self.frozen()
            self.analysis()
        if 'ablations' in stages:
            for variant in VARIANTS:
                if variant == 'main':
                    continue
                weights = self.distill(variant)
                self.finetune(f'fd-{variant}', self.seeds[0], FT_CONFIG,
                              [f'model.backbone.init_cfg.checkpoint={weights}', *VARIANTS[variant][1]])
        if 'main' in stages:  # the teacher's other seeds last: they cost as much as all the ablations
            for seed in self.seeds[1:]:
                self.finetune('teacher', seed, TEACHER_FT_CONFIG, teacher_options)
        report = write_report(
            self.work_dir,
            dict(
                variants={
                    k: v[0]
                    for k, v in VARIANTS.items()
                },
                fd=FD_CONFIG,
                finetune=FT_CONFIG,
                teacher_finetune=TEACHER_FT_CONFIG,
                quick=self.args.quick,
                threads=self.args.threads))
        print(f'[done] {report}')
        return report


def mark_metrics_file(test_dir: str) -> None:
    """Writes ``test_dir/metrics_file``: the path (relative to ``test_dir``) of the metrics JSON mmengine's
    logger wrote for the newest ``tools/test.py`` run there (tools/test.py has no output file to skip on)."""
    found = sorted(glob.glob(osp.join(test_dir, '*', '[0-9]*.json')))
    if not found:
        raise SystemExit(f'[error] tools/test.py wrote no metrics JSON under {test_dir}')
    with open(osp.join(test_dir, 'metrics_file'), 'w') as f:
        f.write(osp.relpath(found[-1], test_dir) + '\n')


def main(argv: Optional[List[str]] = None) -> str:
    return Reproduction(parse_args(argv)).run()


if __name__ == '__main__':
    main()
