"""``--model LABEL CONFIG [CHECKPOINT] [part=...] [key=value ...]`` specs of the analysis tools."""
import argparse
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mmengine.config import DictAction
from mmengine.utils import ProgressBar

from fdclip_mm.analysis.attention_model import input_statistics
from fdclip_mm.analysis.attention_statistics import AttentionStats, analyse_attention
from fdclip_mm.analysis.image_folder import iter_image_batches, list_images
from model_builder import build_analysis_module  # beside this module

SPEC_HELP = ('LABEL CONFIG [CHECKPOINT] [part=auto|self|student|teacher|backbone] [key=value ...]: a model to '
             'analyse; repeat for a side-by-side comparison. Without CHECKPOINT the model keeps the weights it '
             'is built with (random for a student; its own checkpoint for a teacher). key=value pairs override '
             'that model\'s config like --cfg-options (e.g. model.teacher.img_size=224).')


@dataclass
class ModelSpec:
    """One model of an analysis run."""
    label: str
    config: str
    checkpoint: Optional[str] = None
    part: str = 'auto'
    cfg_options: Dict[str, object] = field(default_factory=dict)


def add_analysis_args(parser: argparse.ArgumentParser) -> None:
    """The arguments every attention-analysis script takes: images, models, output folder, sampling."""
    parser.add_argument('images', help='folder of images (searched recursively)')
    parser.add_argument('--model', nargs='+', action='append', required=True, metavar='TOKEN', help=SPEC_HELP)
    parser.add_argument('--out-dir', default='work_dirs/analysis', help='output folder')
    parser.add_argument('--num-images', type=int, default=None, help='use the first N images (default: all)')
    parser.add_argument('--img-size', type=int, default=None, help='input size (default: the model\'s)')
    parser.add_argument('--batch-size', type=int, default=8)


def parse_model_spec(tokens: Sequence[str]) -> ModelSpec:
    """``['FD', 'cfg.py', 'ckpt.pth', 'part=student', 'model.student.img_size=224']`` -> :class:`ModelSpec`.

    Raises:
        ValueError: without a label and a config, or with two checkpoints.
    """
    if len(tokens) < 2:
        raise ValueError(f'--model needs at least LABEL CONFIG, got {list(tokens)}')
    spec = ModelSpec(label=tokens[0], config=tokens[1])
    for token in tokens[2:]:
        if token.startswith('part='):
            spec.part = token[len('part='):]
        elif '=' in token:
            key, value = token.split('=', 1)
            spec.cfg_options[key] = DictAction._parse_iterable(value)
        elif spec.checkpoint is None:
            spec.checkpoint = None if token.lower() == 'none' else token
        else:
            raise ValueError(f'--model {tokens[0]}: a second checkpoint {token!r}')
    return spec


def analyse_specs(specs: List[ModelSpec],
                  image_dir: str,
                  num_images: Optional[int] = None,
                  img_size: Optional[int] = None,
                  batch_size: int = 8,
                  renormalize: bool = True) -> Dict[str, AttentionStats]:
    """Builds every model, runs it over the images (with a progress bar) and returns its statistics."""
    paths = list_images(image_dir, num_images)
    results = {}
    for spec in specs:
        model, module = build_analysis_module(spec.config, spec.checkpoint, spec.part, spec.cfg_options)
        size = img_size or module_img_size(module)
        mean, std = input_statistics(model, module)
        print(f'{spec.label}: {type(module).__name__}, {len(paths)} images at {size} px')
        bar = ProgressBar(len(paths))

        def advance(count: int) -> None:
            for _ in range(count):
                bar.update()

        results[spec.label] = analyse_attention(
            module, iter_image_batches(paths, size, mean, std, batch_size), renormalize=renormalize, on_batch=advance)
        print()
    return results


def module_img_size(module) -> int:
    size = getattr(module, 'img_size', None)
    if size is None:
        raise ValueError(f'{type(module).__name__} has no img_size; pass --img-size')
    return int(size[0] if isinstance(size, (tuple, list)) else size)
