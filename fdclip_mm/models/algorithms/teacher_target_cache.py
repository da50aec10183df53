"""Teacher targets computed once for fixed views and read back by the distiller.

A frozen teacher gives the same tokens for the same view every epoch. When the training pipeline is
deterministic (no random crop or flip: the student's regularisation is then drop path and masking only),
``tools/cache_teacher_targets.py`` runs the teacher once over the training set and writes its tokens, and
``FeatureDistiller(target_cache=FILE)`` reads them instead of running the teacher: on a CPU the teacher's
forward is most of a distillation step when it is larger than the student.

A cache fits a run only if it proves that it holds what the run's teacher would compute now, which
:meth:`TeacherTargetCache.mismatch` checks before the first step (``fdclip_mm.TargetCacheCheckHook``, which our
runners register; the distiller refuses to read a cache that was not checked):

- the run's training pipeline is the one the cache was written with (so every view is the cached one);
- the run's teacher is the cache's: the same checkpoint content (SHA-256 of the file), reader, architecture,
  input size, precision and input normalisation (:meth:`FeatureDistiller.teacher_identity`);
- it holds every training image, and none changed since: each image's size and modification time are
  recorded with its SHA-256; an image whose size differs, or whose modification time differs and whose
  content hashes otherwise, is named.

File layout (``torch.save``; read with ``weights_only=True``): ``keys`` (image paths as the dataset gives
them), ``tokens`` (N, [1 +] h*w, C) float16 (class token first when the teacher has one, then its patch map
in raster order), ``grid`` (h, w), ``with_cls``, ``images`` (per key: ``size``, ``mtime_ns``, ``sha256``;
:func:`~fdclip_mm.file_identity.file_records`), ``meta`` (``teacher``: the teacher's identity,
``pipeline``: the training pipeline's config, and the config file it was written from).
"""
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from fdclip_mm.checkpoint import CheckpointFileError, read_checkpoint
from fdclip_mm.file_identity import changed_files, file_records
from ..feature_map import FeatureMap, feature_tokens, tokens_to_feature_map

FORMAT_VERSION = 4  # 4: the teacher's identity and each image's size, time and hash; 3: the pipeline
#: How many image paths an error message lists.
SHOWN_PATHS = 3
#: The command that writes a cache, for messages.
WRITE_COMMAND = 'python tools/cache_teacher_targets.py {config} --out {path}'


class TargetCacheMismatchError(ValueError):
    """A teacher-target cache that does not fit the run (pipeline, teacher or images); the message names what
    differs and the command that rewrites the cache."""


def _shown(paths: Sequence[str]) -> str:
    return ', '.join(paths[:SHOWN_PATHS]) + (', ...' if len(paths) > SHOWN_PATHS else '')


class TeacherTargetCache:
    """Read-only lookup of cached teacher tokens by image path.

    Args:
        path: A file written by :func:`write_target_cache`.
    """

    def __init__(self, path: str) -> None:
        if not osp.isfile(path):
            raise FileNotFoundError(f'teacher target cache {path} does not exist; write it with ' +
                                    WRITE_COMMAND.format(config='CONFIG', path=path))
        try:
            data = read_checkpoint(path)
        except CheckpointFileError as error:
            raise CheckpointFileError(f'teacher target cache: {error}; rewrite it with '
                                      'tools/cache_teacher_targets.py') from None
        if not isinstance(data, dict) or data.get('version') != FORMAT_VERSION or \
                not {'keys', 'tokens', 'grid', 'with_cls', 'images', 'meta'} <= set(data) or \
                not {'pipeline', 'teacher'} <= set(data['meta']):
            raise ValueError(f'{path} is not a teacher target cache of format {FORMAT_VERSION} (which records the '
                             'teacher and each image it was computed from); rewrite it with ' +
                             WRITE_COMMAND.format(config='CONFIG', path=path) + ' --overwrite')
        tokens, keys = data['tokens'], list(data['keys'])
        if tokens.ndim != 3 or tokens.shape[0] != len(keys):
            raise ValueError(f'{path}: {len(keys)} keys for tokens of shape {tuple(tokens.shape)}')
        self.path = path
        self.tokens = tokens
        self.grid = tuple(int(g) for g in data['grid'])
        self.with_cls = bool(data['with_cls'])
        if tokens.shape[1] != int(self.with_cls) + self.grid[0] * self.grid[1]:
            raise ValueError(f'{path}: tokens of shape {tuple(tokens.shape)} do not fit a {self.grid} grid '
                             f'{"with" if self.with_cls else "without"} a class token')
        self.meta: Dict = data['meta']
        self.images: Dict[str, torch.Tensor] = data['images']
        self.index = {key: i for i, key in enumerate(keys)}
        #: Set by :meth:`check_run`: the run's pipeline and images fit this cache.
        self.checked = False

    def __len__(self) -> int:
        return len(self.index)

    @property
    def token_shape(self):
        """([1 +] h*w, C) of one image's tokens."""
        return tuple(self.tokens.shape[1:])

    def lookup(self, keys: Sequence[str]) -> torch.Tensor:
        """Tokens (B, 1 + P, C) in float32 for the images ``keys``; a missing key is an error naming it."""
        try:
            rows = [self.index[key] for key in keys]
        except KeyError as error:
            raise KeyError(f'image {error.args[0]!r} is not in the teacher target cache {self.path} '
                           f'({len(self)} images); rewrite the cache for this dataset') from None
        return self.tokens[rows].float()

    def mismatch(self,
                 image_paths: Sequence[str],
                 pipeline: Sequence[dict],
                 teacher: Dict,
                 config: str = 'CONFIG') -> Optional[str]:
        """What makes this cache unfit for a run, or None when it fits (see the module doc).

        Reads the files' status, and hashes the teacher's checkpoint and the images whose modification time
        changed: one process of a job calls it (``fdclip_mm.TargetCacheCheckHook``: rank 0).

        Args:
            image_paths: ``img_path`` of every item of the run's training dataset.
            pipeline: The run's training pipeline (its config).
            teacher: The run's teacher identity (:meth:`FeatureDistiller.teacher_identity`).
            config: The run's config file, for the command that rewrites the cache.

        Returns:
            A message naming the pipelines, both teachers, or the missing or changed images, and the command
            that rewrites the cache.
        """
        rewrite = (f'; rewrite it for this run with {WRITE_COMMAND.format(config=config, path=self.path)} '
                   '--overwrite (and this run\'s --cfg-options)')
        written, run = pipeline_text(self.meta['pipeline']), pipeline_text(pipeline)
        if run != written:
            return (f'teacher target cache {self.path} holds the targets of the views of the training pipeline '
                    f'{written}, but this run trains on {run}: the cached targets would be regressed from other '
                    'views. Train with the pipeline the cache was written for (a deterministic one)' + rewrite)
        differences = teacher_differences(self.meta['teacher'], teacher)
        if differences:
            return (f'teacher target cache {self.path} was written by another teacher than this run\'s '
                    f'({"; ".join(differences)}): the student would regress onto that teacher\'s targets while '
                    'validation runs this one' + rewrite)
        distinct = sorted(set(image_paths))
        missing = [p for p in distinct if p not in self.index]
        if missing:
            return (f'teacher target cache {self.path} ({len(self)} images) lacks {len(missing)} of this run\'s '
                    f'training images ({_shown(missing)})' + rewrite)
        rows = torch.tensor([self.index[p] for p in distinct], dtype=torch.long)
        changed, _ = changed_files(distinct, {name: record[rows] for name, record in self.images.items()})
        if changed:
            shown = [f'{path} ({what})' for path, what in changed]
            return (f'teacher target cache {self.path} holds the targets of {len(changed)} training image(s) that '
                    f'changed since it was written: {_shown(shown)}' + rewrite)
        return None

    def check_run(self,
                  image_paths: Sequence[str],
                  pipeline: Sequence[dict],
                  teacher: Dict,
                  config: str = 'CONFIG') -> None:
        """Refuses a run that this cache does not fit (:meth:`mismatch`), else marks the cache as checked.

        Raises:
            TargetCacheMismatchError: With :meth:`mismatch`'s message.
        """
        problem = self.mismatch(image_paths, pipeline, teacher, config)
        self.checked = problem is None
        if problem is not None:
            raise TargetCacheMismatchError(problem)

    def check_teachers(self, teachers: Dict[str, nn.Module]) -> None:
        """Refuses a distiller whose teachers (by name) are not one teacher of the cached width.

        Raises:
            ValueError: Several teachers, or another width.
        """
        if len(teachers) != 1:
            raise ValueError('target_cache holds the targets of one teacher; this distiller has '
                             f'{len(teachers)} ({list(teachers)})')
        channels, (teacher, ) = self.token_shape[-1], teachers.values()
        if channels != teacher.embed_dims:
            raise ValueError(f'teacher target cache {self.path} holds {channels}-channel tokens; '
                             f'this teacher gives {teacher.embed_dims}')

    def targets(self, data_samples, device: torch.device) -> FeatureMap:
        """The cached teacher features of a training batch, looked up by each sample's ``img_path``.

        Raises:
            RuntimeError: The cache was not checked against the run (:meth:`check_run`).
            ValueError: A sample has no ``img_path``.
        """
        if not self.checked:
            raise RuntimeError(
                f'target_cache={self.path!r}: the run\'s training pipeline and images were not checked against the '
                'cache (a random crop or flip would be regressed onto the targets of other views). Train with '
                "tools/train.py (its runners check it), or add custom_hooks=[dict(type='fdclip_mm."
                "TargetCacheCheckHook')] to the config")
        if not data_samples or any('img_path' not in s for s in data_samples):
            raise ValueError('target_cache needs the img_path of every training sample (PackInputs keeps it)')
        return self.features(self.lookup([s.img_path for s in data_samples]).to(device))

    def features(self, tokens: torch.Tensor) -> FeatureMap:
        """The :class:`FeatureMap` of looked-up ``tokens``."""
        return tokens_to_feature_map(tokens, self.grid, int(self.with_cls))


#: The parts of a teacher's identity a cache must match, with their names in messages.
TEACHER_FIELDS = {
    'checkpoint_sha256': 'checkpoint content (SHA-256)',
    'reader': 'reader',
    'architecture': 'architecture',
    'img_size': 'input size',
    'dtype': 'precision',
    'input': 'input normalisation',
}


def teacher_differences(cached: Dict, run: Dict) -> List[str]:
    """What differs between two teacher identities, each part named with both values (``cache: ..., run:
    ...``), the checkpoint paths with the checkpoint's content."""
    differences = []
    for field, name in TEACHER_FIELDS.items():
        if json.dumps(cached.get(field), sort_keys=True) != json.dumps(run.get(field), sort_keys=True):
            if field == 'checkpoint_sha256':
                differences.append(f'{name}: cache {cached.get("checkpoint")} ({str(cached.get(field))[:12]}...), '
                                   f'run {run.get("checkpoint")} ({str(run.get(field))[:12]}...)')
            else:
                differences.append(f'{name}: cache {cached.get(field)}, run {run.get(field)}')
    return differences


def training_pipeline(dataset_cfg: dict) -> Optional[List[dict]]:
    """The ``pipeline`` of a dataset config as plain lists and dicts, looked up through wrappers
    (``RepeatDataset``, ...), or None."""
    while dataset_cfg is not None:
        if 'pipeline' in dataset_cfg:
            return _plain(dataset_cfg['pipeline'])
        dataset_cfg = dataset_cfg.get('dataset')
    return None


def pipeline_text(pipeline: Optional[Sequence[dict]]) -> str:
    """A canonical text of a pipeline config (mmengine ``ConfigDict`` s, tuples and lists compare equal)."""
    return json.dumps(_plain(pipeline), sort_keys=True, default=repr)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dataset_image_paths(dataset) -> List[str]:
    """``img_path`` of every item of an mmengine dataset (wrappers included), without loading an image.

    Raises:
        ValueError: An item has no ``img_path``.
    """
    paths = []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        if 'img_path' not in info:
            raise ValueError(f'{type(dataset).__name__} item {index} has no img_path: a teacher target cache '
                             'looks images up by their path')
        paths.append(info['img_path'])
    return paths


def write_target_cache(path: str, keys: List[str], features: FeatureMap, meta: Dict, overwrite: bool = False) -> None:
    """Writes the teacher ``features`` of the images ``keys`` atomically (a temporary file renamed into
    place) with each image's size, modification time and SHA-256; refuses to replace a cache unless asked.
    ``meta['pipeline']`` (the pipeline that made the views) and ``meta['teacher']`` (the teacher's identity,
    :meth:`FeatureDistiller.teacher_identity`) are required."""
    with_cls = features.cls_token is not None
    tokens = feature_tokens(features, with_cls)
    if osp.exists(path) and not overwrite:
        raise FileExistsError(f'{path} exists; pass --overwrite to replace it')
    if 'pipeline' not in meta or 'teacher' not in meta:
        raise ValueError("meta['pipeline'] (the training pipeline the views come from) and meta['teacher'] (the "
                         "teacher's identity) are required")
    if tokens.shape[0] != len(keys) or len(set(keys)) != len(keys):
        raise ValueError(f'{len(keys)} keys ({len(set(keys))} distinct) for {tokens.shape[0]} token rows')
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.tmp{os.getpid()}')
    torch.save(
        dict(
            version=FORMAT_VERSION,
            keys=list(keys),
            tokens=tokens.to(torch.float16).contiguous(),
            grid=list(features.grid),
            with_cls=with_cls,
            images=file_records(keys),
            meta=meta), tmp)
    os.replace(tmp, path)
