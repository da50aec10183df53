"""The install plan of ``scripts/setup_env.sh``: which torch wheel, how mmcv is built, where its wheel is cached.

``setup_env.sh`` asks it twice and evaluates the shell assignments it prints; ``--print-plan`` shows both,
readably, and installs nothing::

    python3 scripts/setup_plan.py torch          # before torch is installed (standard library only)
    .venv/bin/python scripts/setup_plan.py mmcv  # after: reads the installed torch
    bash scripts/setup_env.sh --print-plan       # = python scripts/setup_plan.py show

Inputs (environment):
    FDCLIP_DEVICE         ``auto`` (default): ``cuda`` when ``nvidia-smi`` lists a GPU, else ``cpu``; or ``cuda`` /
                          ``cpu`` (``cuda`` without a visible GPU needs ``TORCH_CUDA_ARCH_LIST``, e.g. on a
                          login node).
    FDCLIP_TORCH_INDEX    pip index URL for torch and torchvision (e.g. ``https://download.pytorch.org/whl/cpu``
                          or a ``.../whl/cuXYZ`` one); default: the wheels pip finds (PyPI's torch 2.14.1 for
                          Linux x86-64 is the CUDA 13.0 build, kernels for sm_75 to sm_120).
    FDCLIP_MMCV_OPS       ``1`` (default): mmcv with its compiled ops (with CUDA kernels on ``cuda``); ``0``:
                          without them (mmcv "lite": enough for distillation, not for mmdet / mmseg models).
    TORCH_CUDA_ARCH_LIST  the architectures mmcv's CUDA kernels are built for (default: the visible GPUs').
    CUDA_HOME             the CUDA toolkit whose ``nvcc`` builds them (default: ``/usr/local/cuda``, else the
                          ``nvcc`` on PATH).
"""
import argparse
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

#: CUDA version and kernel architectures of the torch wheel pip installs by default (read from the installed
#: torch 2.14.1: ``torch.version.cuda``, ``torch.cuda.get_arch_list()``).
DEFAULT_TORCH_CUDA = (13, 0)
DEFAULT_TORCH_ARCHS = ('sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120')
#: OpenMMLab publishes mmcv 2.1.0 wheels for torch 1.8 to 2.1 only.
PREBUILT_MMCV_INDEX = 'https://download.openmmlab.com/mmcv/dist/{variant}/torch{torch}/index.html'
PREBUILT_MMCV_LAST_TORCH = (2, 1)
Capability = Tuple[int, int]


class PlanError(Exception):
    """The plan cannot be followed on this machine as configured; the message says what to set."""


class Gpu(NamedTuple):
    name: str
    capability: Capability


def _version_tuple(text: str, parts: int = 2) -> Tuple[int, ...]:
    numbers = re.findall(r'\d+', text)
    return tuple(int(n) for n in numbers[:parts])


def _run(command: Sequence[str]) -> Optional[str]:
    """stdout of ``command``, or None when it is missing or fails."""
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def query_gpus() -> List[Gpu]:
    """The GPUs ``nvidia-smi`` lists (name and compute capability); none without a working ``nvidia-smi``."""
    out = _run(['nvidia-smi', '--query-gpu=name,compute_cap', '--format=csv,noheader'])
    gpus = []
    for line in (out or '').splitlines():
        name, _, capability = line.rpartition(',')
        if name.strip() and re.fullmatch(r'\s*\d+\.\d+\s*', capability):
            gpus.append(Gpu(name.strip(), _version_tuple(capability)))
    return gpus


def driver_cuda_version() -> Optional[Tuple[int, int]]:
    """The newest CUDA the driver supports (``CUDA Version: 12.4`` in ``nvidia-smi``'s header), if known."""
    match = re.search(r'CUDA Version:\s*(\d+)\.(\d+)', _run(['nvidia-smi']) or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_cuda_home(env: Dict[str, str]) -> Optional[str]:
    """The CUDA toolkit for mmcv's build: ``CUDA_HOME`` / ``CUDA_PATH``, ``/usr/local/cuda``, ``nvcc``'s parent.

    ``/usr/local/cuda`` comes before the ``nvcc`` on PATH because that one may be a wrapper script outside the
    toolkit (torch would then take its parent folder, e.g. ``/usr/local``, as ``CUDA_HOME``).
    """
    for home in (env.get('CUDA_HOME'), env.get('CUDA_PATH'), '/usr/local/cuda'):
        if home and osp.isfile(osp.join(home, 'bin', 'nvcc')):
            return home
    nvcc = shutil.which('nvcc', path=env.get('PATH'))
    return osp.dirname(osp.dirname(osp.realpath(nvcc))) if nvcc else None


def nvcc_version(cuda_home: Optional[str]) -> Optional[Tuple[int, int]]:
    """``nvcc --version``'s release (e.g. (13, 0)), or None without a working nvcc."""
    if cuda_home is None:
        return None
    match = re.search(r'release (\d+)\.(\d+)', _run([osp.join(cuda_home, 'bin', 'nvcc'), '--version']) or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def torch_facts() -> Optional[dict]:
    """The installed torch, or None without torch: ``version``, ``cuda`` (None for a CPU build), ``archs`` (its
    kernel architectures) and ``header_dirs`` (the CUDA library headers of its ``nvidia-*`` wheels)."""
    try:
        import torch
    except ImportError:
        return None
    nvidia = osp.join(osp.dirname(osp.dirname(torch.__file__)), 'nvidia')
    header_dirs = sorted(
        osp.join(nvidia, name, 'include') for name in (os.listdir(nvidia) if osp.isdir(nvidia) else [])
        if osp.isdir(osp.join(nvidia, name, 'include')))
    return dict(
        version=torch.__version__,
        cuda=torch.version.cuda,
        archs=list(torch.cuda.get_arch_list()),
        header_dirs=header_dirs)


def runs_on(archs: Sequence[str], capability: Capability) -> bool:
    """Whether kernels built for ``archs`` (``sm_80``, ...) run on a GPU of ``capability``: an architecture of
    the same major version and no newer minor one (compute_XY PTX, JIT-compiled, runs on anything newer)."""
    for arch in archs:
        kind, _, digits = arch.partition('_')
        if not digits.isdigit():
            continue
        major, minor = int(digits[:-1]), int(digits[-1])
        if (kind == 'sm' and major == capability[0] and minor <= capability[1]) or \
                (kind == 'compute' and (major, minor) <= capability):
            return True
    return False


def choose_device(env: Dict[str, str], gpus: Sequence[Gpu]) -> str:
    """``'cuda'`` or ``'cpu'`` from ``FDCLIP_DEVICE`` (``auto``: cuda when a GPU is listed)."""
    device = env.get('FDCLIP_DEVICE', 'auto') or 'auto'
    if device not in ('auto', 'cuda', 'cpu'):
        raise PlanError(f'FDCLIP_DEVICE must be auto, cuda or cpu, got {device!r}')
    if device == 'auto':
        return 'cuda' if gpus else 'cpu'
    return device


def torch_plan(env: Dict[str, str], gpus: Sequence[Gpu], driver_cuda: Optional[Tuple[int, int]]) -> dict:
    """Where torch and torchvision come from.

    Returns:
        ``device`` and ``torch_index`` (a pip index URL, or ``''`` for pip's default, PyPI's CUDA 13.0 build).

    Raises:
        PlanError: On ``cuda`` without ``FDCLIP_TORCH_INDEX``, when the default wheel cannot run on this machine
            (a driver older than CUDA 13.0, or a GPU without kernels in it, such as V100).
    """
    device = choose_device(env, gpus)
    index = env.get('FDCLIP_TORCH_INDEX', '')
    if device == 'cuda' and not index:
        cuda = '.'.join(map(str, DEFAULT_TORCH_CUDA))
        fix = ('set FDCLIP_TORCH_INDEX to the PyTorch index of a CUDA build that does (https://download.pytorch.org/'
               'whl/cuXYZ, if it publishes torch 2.14.1 for that CUDA), or FDCLIP_DEVICE=cpu')
        if driver_cuda is not None and driver_cuda < DEFAULT_TORCH_CUDA:
            raise PlanError(f'the default torch 2.14.1 wheel is built for CUDA {cuda}, and this driver supports '
                            f'CUDA {driver_cuda[0]}.{driver_cuda[1]} at most: update the driver, or {fix}')
        unsupported = [gpu for gpu in gpus if not runs_on(DEFAULT_TORCH_ARCHS, gpu.capability)]
        if unsupported:
            names = ', '.join(f'{g.name} ({g.capability[0]}.{g.capability[1]})' for g in unsupported)
            raise PlanError(f'the default torch 2.14.1 wheel (CUDA {cuda}) has kernels for '
                            f'{", ".join(DEFAULT_TORCH_ARCHS)}, none for {names}: {fix}')
    return dict(device=device, torch_index=index)


def python_tag() -> str:
    return f'cp{sys.version_info[0]}{sys.version_info[1]}'


def prebuilt_mmcv_index(torch_version: str, cuda: Optional[str]) -> Optional[str]:
    """OpenMMLab's wheel index for this torch, where it has mmcv 2.1.0 wheels (torch <= 2.1), else None."""
    torch_mm = _version_tuple(torch_version)
    if torch_mm > PREBUILT_MMCV_LAST_TORCH:
        return None
    variant = 'cu' + cuda.replace('.', '') if cuda else 'cpu'
    return PREBUILT_MMCV_INDEX.format(variant=variant, torch='.'.join(map(str, torch_mm)))


def arch_list(env: Dict[str, str], gpus: Sequence[Gpu]) -> str:
    """``TORCH_CUDA_ARCH_LIST`` as set, else the visible GPUs' compute capabilities (``'8.0;9.0'``)."""
    if env.get('TORCH_CUDA_ARCH_LIST'):
        return env['TORCH_CUDA_ARCH_LIST']
    return ';'.join(f'{major}.{minor}' for major, minor in sorted({g.capability for g in gpus}))


def mmcv_plan(env: Dict[str, str],
              device: str,
              gpus: Sequence[Gpu],
              torch: dict,
              nvcc: Optional[Tuple[int, int]],
              cuda_home: Optional[str] = None,
              python: Optional[str] = None) -> dict:
    """How mmcv 2.1.0 is installed for the torch in ``torch`` (see :func:`torch_facts`).

    Returns:
        ``kind`` (``'cpu-ops'``, ``'cuda-ops'`` or ``'lite'``), ``build_env`` (the variables of the sdist
        build), ``cache_key`` (the wheel cache's folder: Python, torch, and for CUDA kernels the CUDA version and
        the architectures, so that CPU, CUDA and lite wheels never mix) and ``prebuilt_index`` (OpenMMLab's
        index to try first, or ``''``).

    Raises:
        PlanError: For CUDA kernels without a CUDA torch, an architecture list, or an nvcc of torch's CUDA.
    """
    ops = env.get('FDCLIP_MMCV_OPS', '1') or '1'
    if ops not in ('0', '1'):
        raise PlanError(f'FDCLIP_MMCV_OPS must be 0 or 1, got {ops!r}')
    key = f'{python or python_tag()}-torch{torch["version"].split("+")[0]}'
    if ops == '0':
        return dict(kind='lite', build_env={'MMCV_WITH_OPS': '0'}, cache_key=f'{key}-lite', prebuilt_index='')
    if device == 'cpu':
        # the CPU machine's key of earlier versions; no GPU seen, so mmcv's setup.py builds no CUDA kernels
        return dict(
            kind='cpu-ops',
            build_env={
                'MMCV_WITH_OPS': '1',
                'FORCE_CUDA': '0',
                'CUDA_VISIBLE_DEVICES': ''
            },
            cache_key=key,
            prebuilt_index=prebuilt_mmcv_index(torch['version'], None) or '')
    cuda = torch.get('cuda')
    if not cuda:
        raise PlanError(f'torch {torch["version"]} is a CPU build: set FDCLIP_TORCH_INDEX to a CUDA one, '
                        'or FDCLIP_DEVICE=cpu')
    archs = arch_list(env, gpus)
    if not archs:
        raise PlanError('no GPU visible to choose the CUDA architectures: set TORCH_CUDA_ARCH_LIST (e.g. "9.0")')
    missing = [g for g in gpus if torch.get('archs') and not runs_on(torch['archs'], g.capability)]
    if missing:
        raise PlanError(f'torch {torch["version"]} has no kernels for {missing[0].name} '
                        f'({missing[0].capability[0]}.{missing[0].capability[1]}): set FDCLIP_TORCH_INDEX '
                        'to a build that has')
    torch_cuda = _version_tuple(cuda)
    if nvcc is None:
        raise PlanError(f'mmcv\'s CUDA kernels need nvcc (the CUDA {cuda} toolkit; set CUDA_HOME), or build '
                        'mmcv without ops: FDCLIP_MMCV_OPS=0 (enough for distillation)')
    if nvcc[0] != torch_cuda[0]:
        raise PlanError(f'nvcc {nvcc[0]}.{nvcc[1]} ({cuda_home}) does not match torch\'s CUDA {cuda}: set '
                        f'CUDA_HOME to a CUDA {torch_cuda[0]}.x toolkit')
    sm = '_'.join(a.replace('.', '').replace('+PTX', 'ptx') for a in re.split(r'[;\s]+', archs) if a)
    build_env = {'MMCV_WITH_OPS': '1', 'FORCE_CUDA': '1', 'TORCH_CUDA_ARCH_LIST': archs}
    if cuda_home:
        build_env['CUDA_HOME'] = cuda_home
        # torch's CUDA headers include cuSPARSE / cuBLAS / cuSOLVER ones, which a toolkit assembled from pip
        # packages (nvcc, runtime) lacks; torch's own nvidia-* wheels carry them.
        if not osp.isfile(osp.join(cuda_home, 'include', 'cusparse.h')) and torch.get('header_dirs'):
            build_env['CPATH'] = os.pathsep.join([*torch['header_dirs'], *filter(None, [env.get('CPATH')])])
    return dict(
        kind='cuda-ops',
        build_env=build_env,
        cache_key=f'{key}-cu{cuda.replace(".", "")}-sm{sm}',
        prebuilt_index=prebuilt_mmcv_index(torch['version'], cuda) or '')


def shell(assignments: Dict[str, str]) -> str:
    return ''.join(f'{name}={shlex.quote(value)}\n' for name, value in assignments.items())


def exports(build_env: Dict[str, str]) -> str:
    return 'export ' + ' '.join(f'{name}={shlex.quote(value)}' for name, value in build_env.items())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'phase',
        choices=('torch', 'mmcv', 'show'),
        help='torch / mmcv: shell assignments for setup_env.sh; show: the whole plan, readable')
    args = parser.parse_args(argv)
    env = dict(os.environ)
    gpus = query_gpus()
    try:
        plan = torch_plan(env, gpus, driver_cuda_version())
        if args.phase == 'torch':
            print(shell({'FDCLIP_PLAN_DEVICE': plan['device'], 'FDCLIP_PLAN_TORCH_INDEX': plan['torch_index']}), end='')
            return 0
        facts = torch_facts()
        if args.phase == 'show':
            listed = ', '.join(f'{g.name} ({g.capability[0]}.{g.capability[1]})' for g in gpus) or 'none'
            print(f'device: {plan["device"]} (GPUs: {listed})')
            print(f'torch index: {plan["torch_index"] or "pip default (PyPI: torch 2.14.1 is the CUDA 13.0 build)"}')
            if facts is None:
                print('mmcv: decided once torch is installed')
                return 0
            print(f'torch: {facts["version"]} (CUDA {facts["cuda"] or "none"})')
        elif facts is None:
            raise PlanError('torch is not installed in this interpreter')
        cuda_home = find_cuda_home(env) if plan['device'] == 'cuda' else None
        nvcc = nvcc_version(cuda_home) if cuda_home else None
        mmcv = mmcv_plan(env, plan['device'], gpus, facts, nvcc, cuda_home)
    except PlanError as error:
        print(f'[setup] error: {error}', file=sys.stderr)
        return 2
    if args.phase == 'mmcv':
        print(
            shell({
                'FDCLIP_PLAN_MMCV_KIND': mmcv['kind'],
                'FDCLIP_PLAN_MMCV_KEY': mmcv['cache_key'],
                'FDCLIP_PLAN_MMCV_EXPORTS': exports(mmcv['build_env']),
                'FDCLIP_PLAN_MMCV_PREBUILT': mmcv['prebuilt_index']
            }),
            end='')
        return 0
    print(f'mmcv: {mmcv["kind"]}; build: {" ".join(f"{k}={v}" for k, v in mmcv["build_env"].items())}')
    print(f'mmcv cache key: {mmcv["cache_key"]}')
    print(f'mmcv prebuilt index: {mmcv["prebuilt_index"] or "none for this torch (OpenMMLab: torch <= 2.1)"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
