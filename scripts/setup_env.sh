#!/usr/bin/env bash
# Creates .venv (when missing) and installs the pinned OpenMMLab stack, on a CPU or a CUDA machine.
#
# Idempotent: the requirement files are hashed into .venv/.fdclip_stamp; when the hash matches, nothing
# is installed. mmcv 2.1.0 has no wheel for torch 2.14, so it is built once from its sdist (C++20,
# setuptools<81) and the wheel is cached outside the repository, keyed by Python and torch version, and for
# CUDA kernels by CUDA version and GPU architectures too (scripts/setup_plan.py decides; CPU, CUDA and lite
# builds never share a key). On a machine with a GPU (nvidia-smi lists one) mmcv is built with CUDA kernels
# for the visible GPUs' architectures (MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=...).
#
# Usage: bash scripts/setup_env.sh [--print-plan]   (--print-plan: show the plan, install nothing)
#
# Environment:
#   FDCLIP_VENV          virtual environment folder (default: .venv at the repository root)
#   FDCLIP_WHEEL_CACHE   where the built mmcv wheel is kept (default: ~/.cache/fdclip_mm/wheels)
#   PYTHON               interpreter that creates the venv (default: python3)
#   FDCLIP_DEVICE        auto (default) | cuda | cpu
#   FDCLIP_TORCH_INDEX   pip index URL for torch/torchvision (default: pip's; PyPI's torch 2.14.1 is CUDA 13.0)
#   FDCLIP_MMCV_OPS      1 (default) | 0: mmcv without compiled ops ("lite": distillation only, no mmdet/mmseg)
#   TORCH_CUDA_ARCH_LIST, CUDA_HOME, MAX_JOBS   for the CUDA build (see scripts/setup_plan.py)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FDCLIP_VENV:-$root/.venv}
cache=${FDCLIP_WHEEL_CACHE:-$HOME/.cache/fdclip_mm/wheels}
py=${PYTHON:-python3}
plan="$root/scripts/setup_plan.py"

if [ "${1:-}" = "--print-plan" ]; then
  planner=$py
  "$venv/bin/python" -c 'import torch' 2>/dev/null && planner="$venv/bin/python"
  exec "$planner" "$plan" show
fi
[ $# -eq 0 ] || { echo "usage: $0 [--print-plan]" >&2; exit 2; }

stamp_of() {
  cat "$root"/requirements/*.txt "$root/setup.py" "$root/setup.cfg" "$root/scripts/setup_env.sh" "$plan" |
    sha256sum | cut -d' ' -f1
}
# The plan's inputs take part in the stamp: switching FDCLIP_DEVICE or FDCLIP_MMCV_OPS reinstalls.
stamp="$(stamp_of)-${FDCLIP_DEVICE:-auto}-${FDCLIP_MMCV_OPS:-1}-${FDCLIP_TORCH_INDEX:-}"
if [ -f "$venv/.fdclip_stamp" ] && [ "$(cat "$venv/.fdclip_stamp")" = "$stamp" ]; then
  echo "[setup] $venv is up to date; nothing to install."
  exit 0
fi

torch_plan=$("$py" "$plan" torch)
eval "$torch_plan"
echo "[setup] device: $FDCLIP_PLAN_DEVICE"

[ -x "$venv/bin/python" ] || { echo "[setup] creating $venv"; "$py" -m venv "$venv"; }
# pip, minus the warnings about extra index folders named in a machine's pip.conf that do not exist.
pip_quiet() {
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
  return "${PIPESTATUS[0]}"
}
pins="$root/requirements/pinned.txt"
pip_quiet install -q --upgrade -c "$pins" pip setuptools wheel
echo "[setup] installing torch and torchvision${FDCLIP_PLAN_TORCH_INDEX:+ from $FDCLIP_PLAN_TORCH_INDEX}"
pip_quiet install -q -c "$pins" ${FDCLIP_PLAN_TORCH_INDEX:+--index-url "$FDCLIP_PLAN_TORCH_INDEX"} torch torchvision

mmcv_plan=$("$venv/bin/python" "$plan" mmcv)
eval "$mmcv_plan"
mmcv_version=$(sed -n 's/^mmcv==//p' "$pins")
wheel_dir="$cache/$FDCLIP_PLAN_MMCV_KEY"
marker="$venv/.fdclip_mmcv"
if [ -f "$marker" ]; then
  installed_key=$(cat "$marker")
elif [ "$FDCLIP_PLAN_MMCV_KIND" = cpu-ops ]; then
  installed_key=$FDCLIP_PLAN_MMCV_KEY  # a venv of an earlier version: CPU ops, no marker
else
  installed_key=none
fi
check="import mmcv, sys; sys.exit(mmcv.__version__ != '$mmcv_version')"
[ "$FDCLIP_PLAN_MMCV_KIND" = lite ] || check="import mmcv._ext; $check"
if [ "$installed_key" != "$FDCLIP_PLAN_MMCV_KEY" ] || ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  if [ -n "$FDCLIP_PLAN_MMCV_PREBUILT" ] && ! ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
    echo "[setup] trying a prebuilt mmcv $mmcv_version from $FDCLIP_PLAN_MMCV_PREBUILT"
    mkdir -p "$wheel_dir"
    pip_quiet download -q --no-deps --only-binary mmcv -f "$FDCLIP_PLAN_MMCV_PREBUILT" -d "$wheel_dir" \
      "mmcv==$mmcv_version" || echo "[setup] no prebuilt wheel matches; building"
  fi
  if ! ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
    jobs=${MAX_JOBS:-2}
    [ "$FDCLIP_PLAN_MMCV_KIND" != cuda-ops ] || jobs=${MAX_JOBS:-$(nproc)}
    case "$FDCLIP_PLAN_MMCV_KIND" in
      cpu-ops) echo "[setup] building mmcv $mmcv_version from its sdist with CPU ops (7-12 minutes on 2 cores)" ;;
      cuda-ops) echo "[setup] building mmcv $mmcv_version from its sdist with CUDA ops ($FDCLIP_PLAN_MMCV_EXPORTS," \
        "$jobs jobs; not timed here, expect longer than the CPU build's 7-12 minutes on 2 cores)" ;;
      lite) echo "[setup] building mmcv $mmcv_version from its sdist without ops (lite: distillation only)" ;;
    esac
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    pip_quiet download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" "mmcv==$mmcv_version"
    tar -xzf "$work"/mmcv-"$mmcv_version".tar.gz -C "$work"
    # torch >= 2.10 headers need C++20; a build without ops keeps the name mmcv (setup.py calls it mmcv-lite,
    # which would not satisfy the requirement mmcv of our package, mmdet and mmseg).
    sed -i -e "s/'-std=c++17'/'-std=c++20'/g" -e "s/else 'mmcv-lite'/else 'mmcv'/" \
      "$work/mmcv-$mmcv_version/setup.py"
    mkdir -p "$wheel_dir"
    (cd "$work/mmcv-$mmcv_version" &&
      eval "$FDCLIP_PLAN_MMCV_EXPORTS" &&
      export MAX_JOBS=$jobs CFLAGS="-O3 -g0 -DNDEBUG -fwrapv -Wno-sign-compare" &&
      { pip_quiet wheel -q --no-deps --no-build-isolation -w "$work/dist" . >"$work/build.log" 2>&1 ||
        { tail -n 60 "$work/build.log"; echo "[setup] mmcv build failed (last 60 lines above)"; exit 1; }; } &&
      mv "$work"/dist/mmcv-*.whl "$wheel_dir"/)
  fi
  echo "[setup] installing mmcv from $wheel_dir"
  # the same version built another way (CPU / CUDA / lite) would count as installed: remove it first
  "$venv/bin/python" -m pip uninstall -q -y mmcv mmcv-lite >/dev/null 2>&1 || true
  pip_quiet install -q -c "$pins" "$wheel_dir"/mmcv-"$mmcv_version"-*.whl
  echo "$FDCLIP_PLAN_MMCV_KEY" >"$marker"
fi

echo "[setup] installing the OpenMMLab stack and test tools"
pip_quiet install -q -c "$pins" -r "$root/requirements/runtime.txt" -r "$root/requirements/tests.txt" \
  -r "$root/requirements/docs.txt"

echo "[setup] installing fdclip_mm (editable)"
pip_quiet install -q -c "$pins" --no-deps --no-build-isolation -e "$root"
pip_quiet check
if [ "$FDCLIP_PLAN_DEVICE" = cuda ] && nvidia-smi -L >/dev/null 2>&1 &&
  ! "$venv/bin/python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "[setup] error: nvidia-smi lists a GPU but the installed torch does not see it (driver too old for its" \
    "CUDA, or no kernels for the GPU): set FDCLIP_TORCH_INDEX to a matching CUDA build" >&2
  exit 1
fi
echo "$stamp" >"$venv/.fdclip_stamp"
echo "[setup] done: $venv (mmcv: $FDCLIP_PLAN_MMCV_KIND)"
