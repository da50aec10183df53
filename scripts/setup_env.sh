#!/usr/bin/env bash
# Creates .venv (when missing) and installs the pinned OpenMMLab stack on a CPU machine.
#
# Idempotent: the requirement files are hashed into .venv/.fdclip_stamp; when the hash matches, nothing
# is installed. mmcv 2.1.0 has no wheel for torch 2.14, so it is built once from its sdist (C++20,
# setuptools<81, CPU ops) and the wheel is cached outside the repository, keyed by Python and torch version.
#
# Environment:
#   FDCLIP_VENV        virtual environment folder (default: .venv at the repository root)
#   FDCLIP_WHEEL_CACHE where the built mmcv wheel is kept (default: ~/.cache/fdclip_mm/wheels)
#   PYTHON             interpreter that creates the venv (default: python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FDCLIP_VENV:-$root/.venv}
cache=${FDCLIP_WHEEL_CACHE:-$HOME/.cache/fdclip_mm/wheels}
py=${PYTHON:-python3}

stamp_of() {
  cat "$root"/requirements/*.txt "$root/setup.py" "$root/setup.cfg" "$root/scripts/setup_env.sh" | sha256sum | cut -d' ' -f1
}

if [ -f "$venv/.fdclip_stamp" ] && [ "$(cat "$venv/.fdclip_stamp")" = "$(stamp_of)" ]; then
  echo "[setup] $venv is up to date; nothing to install."
  exit 0
fi

[ -x "$venv/bin/python" ] || { echo "[setup] creating $venv"; "$py" -m venv "$venv"; }
# pip, minus the warnings about extra index folders named in a machine's pip.conf that do not exist.
pip_quiet() {
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
  return "${PIPESTATUS[0]}"
}
pins="$root/requirements/pinned.txt"
pip_quiet install -q --upgrade -c "$pins" pip setuptools wheel
echo "[setup] installing torch and torchvision"
pip_quiet install -q -c "$pins" torch torchvision

tag=$("$venv/bin/python" -c 'import sys, torch; print("cp%d%d-torch%s" % (sys.version_info[0], sys.version_info[1], torch.__version__.split("+")[0]))')
mmcv_version=$(sed -n 's/^mmcv==//p' "$pins")
wheel_dir="$cache/$tag"
if ! "$venv/bin/python" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$mmcv_version')" 2>/dev/null; then
  if ! ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
    echo "[setup] building mmcv $mmcv_version from its sdist with CPU ops (about 9 minutes on 2 cores)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    pip_quiet download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" "mmcv==$mmcv_version"
    tar -xzf "$work"/mmcv-"$mmcv_version".tar.gz -C "$work"
    # torch >= 2.10 headers need C++20.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$work/mmcv-$mmcv_version/setup.py"
    mkdir -p "$wheel_dir"
    (cd "$work/mmcv-$mmcv_version" &&
      export MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        CFLAGS="-O3 -g0 -DNDEBUG -fwrapv -Wno-sign-compare" &&
      { pip_quiet wheel -q --no-deps --no-build-isolation -w "$work/dist" . >"$work/build.log" 2>&1 ||
        { tail -n 60 "$work/build.log"; echo "[setup] mmcv build failed (last 60 lines above)"; exit 1; }; } &&
      mv "$work"/dist/mmcv-*.whl "$wheel_dir"/)
  fi
  echo "[setup] installing mmcv from $wheel_dir"
  pip_quiet install -q -c "$pins" "$wheel_dir"/mmcv-"$mmcv_version"-*.whl
fi

echo "[setup] installing the OpenMMLab stack and test tools"
pip_quiet install -q -c "$pins" -r "$root/requirements/runtime.txt" -r "$root/requirements/tests.txt"

echo "[setup] installing fdclip_mm (editable)"
pip_quiet install -q -c "$pins" --no-deps --no-build-isolation -e "$root"
pip_quiet check
stamp_of >"$venv/.fdclip_stamp"
echo "[setup] done: $venv"
