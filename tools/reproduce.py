"""Small-scale reproduction of Feature Distillation on real data: Fashion-MNIST + the real DINOv2 ViT-S/14.

Every stage is an ordinary run of our tools (``tools/train.py``, ``tools/test.py``, the converters and the
analysis tools) on the configs in ``configs/reproduce/``; a stage whose output exists is skipped, and training
stages run with ``--resume`` (done once ``trained`` is written into their work dir), so an interrupted run
continues where it stopped, inside a training stage too. Stages, in order:

1. ``targets``: the teacher's tokens of the 10,000 distillation images, once (tools/cache_teacher_targets.py).
2. ``distill``: FD into a 4-layer FDViT (``main``: shared RPB, whitened targets, full input) and into an FDViT of
   the teacher's own architecture (``matched``: ViT-S/14, the paper's title claim), both from the cached targets.
3. ``finetune``: on 1,000 labelled images, rows ``scratch`` / ``fd`` (4-layer), ``teacher`` (DINOv2 itself),
   ``fd-s`` / ``scratch-s`` (matched). Every row runs seed 0 at each lr of one grid (``LR_GRID``) and is
   validated on the held-out split; the lr with the best validation top-1 is written to
   ``finetune/<row>/chosen_lr.json`` before any test runs; then seeds 1 and 2 run at that lr and the three
   chosen runs are tested on the 10,000 test images.
4. ``frozen``: 20-NN and linear probe on pooled tokens (train: the 1,000 labelled images; test: the test set)
   for the teacher and each student, distilled and at random init.
5. ``analysis``: attention distance per head (fig. 1) and average attention maps (figs. 2-4) on 64 test images
   for teacher, FD student, random init and the fine-tuned 4-layer FD / scratch students.
6. ``ablations``: 4-layer distillation without whitening, with APE, with per-layer RPB, with 25% input; each
   fine-tuned (seed 0, at the ``fd`` row's chosen lr) and tested like the FD row.

Then ``REPORT.md`` is written into the work dir: every number is a link to the log or JSON file it was read from.
``--stages`` runs a subset (``main`` = 1-5 for the 4-layer rows and the teacher, ``matched`` = the matched rows,
``ablations``, ``report``); the report covers whatever exists. Training runs with ``--amp`` (bf16 where the CPU
or GPU runs it natively, fp32 elsewhere; ``--no-amp`` for fp32 everywhere). ``--quick`` shrinks every stage (a
few hundred images, one or two epochs, two lrs) for a check in a few minutes.

    python tools/reproduce.py                      # all of it (make reproduce)
    python tools/reproduce.py --stages main        # the 4-layer comparison only
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
from typing import Dict, List, Optional, Tuple

from reproduction_report import last_scalar, write_report  # tools/reproduction_report.py, beside this script

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

FD_CONFIG = 'configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist.py'
FD_MATCHED_CONFIG = 'configs/reproduce/fd_dinov2-vits14_fdvit-s14_fmnist.py'
FT_CONFIG = 'configs/reproduce/finetune_fdvit-t14-4l_fmnist-1k.py'
FT_MATCHED_CONFIG = 'configs/reproduce/finetune_fdvit-s14_fmnist-1k.py'
TEACHER_FT_CONFIG = 'configs/reproduce/finetune_dinov2-vits14_fmnist-1k.py'
VARIANTS = {  # name: (distillation config, fine-tuning overrides for its student); ablations run in this order
    'main': (FD_CONFIG, []),
    'mask75': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_mask75.py', []),
    'no-whitening': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_no-whitening.py', []),
    'ape': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_ape.py', ['model.backbone.pos_embed=ape']),
    'rpb': ('configs/reproduce/fd_dinov2-vits14_fdvit-t14-4l_fmnist_rpb.py', []),
}
MAIN_ROWS = ('scratch', 'fd', 'teacher')
MATCHED_ROWS = ('fd-s', 'scratch-s')
# The same for every row. First (1e-4, 3e-4, 1e-3); 3e-5 added when the teacher's validation optimum fell on the
# grid's lower edge (1e-4), before any test had run, for every row (docs/en/user_guides/reproduction.md).
LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3)
SEEDS = (0, 1, 2)
IMG_SIZE = 56
TRAINED_MARK = 'trained'  # written into a training stage's work dir once its run finished
STAGE_GROUPS = ('main', 'matched', 'ablations', 'report')


def lr_name(lr: float) -> str:
    return f'lr{lr:.0e}'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/reproduce')
    parser.add_argument('--data-root', default='data/fashion_mnist', help='scripts/fetch_fashion_mnist.py output')
    parser.add_argument(
        '--teacher', default='data/demo/weights/dinov2_vits14.pth', help='DINOv2 weights (scripts/fetch_demo_data.py)')
    parser.add_argument('--stages', nargs='+', default=list(STAGE_GROUPS), choices=STAGE_GROUPS)
    parser.add_argument('--quick', action='store_true', help='a few hundred images, 1-2 epochs per stage, 2 lrs')
    parser.add_argument('--threads', type=int, default=2, help='torch threads of every stage')
    parser.add_argument(
        '--no-amp', dest='amp', action='store_false', help='train in fp32 (default: tools/train.py --amp)')
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
        self.lr_grid = LR_GRID[1::2] if args.quick else LR_GRID
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

    def distill_options(self, variant: str) -> List[str]:
        options = self.data_options() + [
            *self.teacher_options(), f'model.target_cache={self.path("teacher_targets.pth")}'
        ]
        if variant == 'matched':
            options += self.arch_options('model.student')
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
        amp = ['--amp'] if self.args.amp else []
        self.run_stage(
            name,
            osp.join(run_dir, TRAINED_MARK),
            ['tools/train.py', config, '--work-dir', run_dir, '--resume', *amp, '--cfg-options', *options],
            after=lambda: self.mark_trained(run_dir))

    def mark_trained(self, run_dir: str) -> None:
        """Writes ``run_dir/trained`` (the final checkpoint's path) after a training stage succeeded."""
        with open(osp.join(run_dir, TRAINED_MARK), 'w') as f:
            f.write(self.checkpoint_of(run_dir) + '\n')

    # ----------------------------------------------------------------------------------------- stages
    def targets(self) -> None:
        command = [
            'tools/cache_teacher_targets.py', FD_CONFIG, '--out',
            self.path('teacher_targets.pth'), '--batch-size', '128', '--cfg-options', *self.distill_options('main')
        ]
        command.remove(f'model.target_cache={self.path("teacher_targets.pth")}')
        self.run_stage('targets', self.path('teacher_targets.pth'), command)

    def distill(self, variant: str) -> str:
        config = FD_MATCHED_CONFIG if variant == 'matched' else VARIANTS[variant][0]
        run_dir = self.path('distill', variant)
        self.train(f'distill {variant}', config, run_dir, self.distill_options(variant))
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

    def row(self, row: str) -> Tuple[str, List[str]]:
        """(fine-tuning config, ``--cfg-options``) of a fine-tuning row; distils / converts what it starts from."""
        matched = [*self.arch_options('model.backbone'), f'model.head.in_channels={self.teacher_arch["embed_dims"]}']
        if row == 'scratch':
            return FT_CONFIG, ['model.backbone.init_cfg=None']
        if row == 'fd':
            return FT_CONFIG, [f'model.backbone.init_cfg.checkpoint={self.distill("main")}']
        if row == 'teacher':
            return TEACHER_FT_CONFIG, [f'model.backbone.init_cfg.checkpoint={self.teacher_weights()}', *matched]
        if row == 'fd-s':
            return FT_MATCHED_CONFIG, [f'model.backbone.init_cfg.checkpoint={self.distill("matched")}', *matched]
        if row == 'scratch-s':
            return FT_MATCHED_CONFIG, ['model.backbone.init_cfg=None', *matched]
        if row.startswith('fd-') and row[3:] in VARIANTS:
            variant = row[3:]
            return FT_CONFIG, [f'model.backbone.init_cfg.checkpoint={self.distill(variant)}', *VARIANTS[variant][1]]
        raise ValueError(f'unknown fine-tuning row {row!r}')

    def finetune(self, row: str, lr: float, seed: int, test: bool) -> None:
        """Fine-tunes ``row`` at ``lr`` with ``seed`` (validated at the end); tests it if ``test``."""
        config, options = self.row(row)
        options = [*self.finetune_options(seed), f'optim_wrapper.optimizer.lr={lr}', *options]
        run_dir = self.path('finetune', row, lr_name(lr), f'seed{seed}')
        self.train(f'finetune {row} {lr_name(lr)} seed {seed}', config, run_dir, options)
        if not test:
            return
        test_dir = osp.join(run_dir, 'test')
        self.run_stage(
            f'test {row} {lr_name(lr)} seed {seed}',
            osp.join(test_dir, 'metrics_file'),
            ['tools/test.py', config,
             self.checkpoint_of(run_dir), '--work-dir', test_dir, '--cfg-options', *options],
            after=lambda: mark_metrics_file(test_dir))

    def chosen_lr(self, row: str) -> float:
        """Seed 0 of ``row`` at every lr of the grid; the lr of the best validation top-1 (the smaller lr on a tie),
        recorded in ``finetune/<row>/chosen_lr.json`` with the grid's validation results; chosen again (after the
        missing grid points) if ``LR_GRID`` changed since."""
        path = self.path('finetune', row, 'chosen_lr.json')
        names = [lr_name(lr) for lr in self.lr_grid]
        if osp.isfile(path):
            with open(path) as f:
                if sorted(json.load(f)['grid']) != sorted(names):  # the grid changed: complete it, choose again
                    print(f'[lr]   {row}: the grid is now {", ".join(names)}; choosing again', flush=True)
                    os.remove(path)
        if not osp.isfile(path):
            for lr in self.lr_grid:
                self.finetune(row, lr, self.seeds[0], test=False)
            grid = {}
            for lr in self.lr_grid:
                run_dir = self.path('finetune', row, lr_name(lr), f'seed{self.seeds[0]}')
                found = last_scalar(run_dir, 'accuracy/top1')
                if found is None:
                    raise SystemExit(f'[error] {run_dir} logged no validation accuracy/top1 to choose the lr on')
                grid[lr_name(lr)] = dict(lr=lr, val_top1=found[0], source=osp.relpath(found[1], self.work_dir))
            best = max(grid.values(), key=lambda entry: (entry['val_top1'], -entry['lr']))
            with open(path + '.tmp', 'w') as f:
                json.dump(dict(chosen=best['lr'], seed=self.seeds[0], grid=grid), f, indent=1)
            os.replace(path + '.tmp', path)
            print(f'[lr]   {row}: {lr_name(best["lr"])} (validation top-1 {best["val_top1"]:.2f})', flush=True)
        with open(path) as f:
            return float(json.load(f)['chosen'])

    def finetune_rows(self, rows: List[str]) -> None:
        """Every row's lr grid first, then its chosen runs: seed 0 tested, the other seeds trained and tested."""
        chosen = {row: self.chosen_lr(row) for row in rows}
        for row in rows:
            for seed in self.seeds:
                self.finetune(row, chosen[row], seed, test=True)

    def frozen(self, group: str) -> None:
        limit = ['--num-train', '128', '--num-test', '200'] if self.args.quick else []
        common = self.teacher_options()
        if group == 'main':
            fd = self.checkpoint_of(self.path('distill', 'main'))
            models = [
                '--model', 'DINOv2 teacher', FD_CONFIG, 'part=teacher', *common, '--model', 'FD student', FD_CONFIG, fd,
                'part=student', *common, '--model', 'random init', FD_CONFIG, 'part=student', *common
            ]
        else:
            fd = self.checkpoint_of(self.path('distill', 'matched'))
            student = [*common, *self.arch_options('model.student')]
            models = [
                '--model', 'FD-S student', FD_MATCHED_CONFIG, fd, 'part=student', *student, '--model', 'random init S',
                FD_MATCHED_CONFIG, 'part=student', *student
            ]
        out = self.path('frozen', 'frozen_features.json' if group == 'main' else f'frozen_features_{group}.json')
        self.run_stage(f'frozen features {group}', out, [
            'tools/analysis/frozen_features.py', '--data-prefix',
            osp.join(self.data_root, 'images'), '--train-ann',
            osp.join(self.data_root, 'meta', 'labelled_1k.txt'), '--test-ann',
            osp.join(self.data_root, 'meta', 'test.txt'), *limit, '--out', out, *models
        ])

    def analysis(self) -> None:
        fd = self.checkpoint_of(self.path('distill', 'main'))
        common = self.teacher_options()
        fd_lr, scratch_lr = lr_name(self.chosen_lr('fd')), lr_name(self.chosen_lr('scratch'))
        models = [
            ['--model', 'DINOv2 teacher', FD_CONFIG, 'part=teacher', *common],
            ['--model', 'FD student', FD_CONFIG, fd, 'part=student', *common],
            ['--model', 'random init', FD_CONFIG, 'part=student', *common],
            [
                '--model', 'FD fine-tuned', FT_CONFIG,
                self.checkpoint_of(self.path('finetune', 'fd', fd_lr, 'seed0')), 'part=backbone',
                'model.backbone.init_cfg=None'
            ],
            [
                '--model', 'scratch fine-tuned', FT_CONFIG,
                self.checkpoint_of(self.path('finetune', 'scratch', scratch_lr, 'seed0')), 'part=backbone',
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
        rows = [*(MAIN_ROWS if 'main' in stages else ()), *(MATCHED_ROWS if 'matched' in stages else ())]
        if rows or 'ablations' in stages:
            self.targets()
        self.finetune_rows(rows)
        if 'main' in stages:
            self.frozen('main')
            self.analysis()
        if 'matched' in stages:
            self.frozen('matched')
        if 'ablations' in stages:
            fd_lr = self.chosen_lr('fd')
            for variant in VARIANTS:
                if variant != 'main':
                    self.finetune(f'fd-{variant}', fd_lr, self.seeds[0], test=True)
        report = write_report(
            self.work_dir,
            dict(
                variants={
                    k: v[0]
                    for k, v in VARIANTS.items()
                },
                fd=FD_CONFIG,
                fd_matched=FD_MATCHED_CONFIG,
                finetune=FT_CONFIG,
                finetune_matched=FT_MATCHED_CONFIG,
                teacher_finetune=TEACHER_FT_CONFIG,
                lr_grid=[lr_name(lr) for lr in self.lr_grid],
                amp=self.args.amp,
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
