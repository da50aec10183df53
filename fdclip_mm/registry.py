"""Registries of the ``fdclip_mm`` scope.

Each is a child of mmengine's root registry of the same kind, so a config whose ``default_scope`` is
``mmpretrain``, ``mmdet`` or ``mmseg`` can still build ``type='fdclip_mm.X'``, and our own nested builds find
the libraries' modules through the parent chain. ``locations`` makes the first lookup import the subpackage
that registers the modules, so importing this file stays cheap. ``TEACHER_READERS`` (a teacher family's file
-> its backbone's state dict) has no mmengine counterpart: the teachers in ``models`` ask it for a reader by
name, and its location, ``converters``, registers them.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'fdclip_mm'

MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE, locations=['fdclip_mm.models'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=['fdclip_mm.datasets'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE, locations=['fdclip_mm.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE, locations=['fdclip_mm.engine'])
OPTIM_WRAPPERS = Registry('optim wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope=SCOPE, locations=['fdclip_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope=SCOPE,
    locations=['fdclip_mm.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, scope=SCOPE, locations=['fdclip_mm.engine'])
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope=SCOPE, locations=['fdclip_mm.engine'])
STRATEGIES = Registry('strategy', parent=MMENGINE_STRATEGIES, scope=SCOPE, locations=['fdclip_mm.engine'])
TEACHER_READERS = Registry('teacher checkpoint reader', scope=SCOPE, locations=['fdclip_mm.converters.teacher_readers'])
