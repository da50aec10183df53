#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py for its steps); results and logs under $OUT
# (default work_dirs/gpu_check), summary.md first. Run from the repository root:
#   bash benchmarks/gpu_check.sh                    # on a machine with one CUDA GPU, under 8 minutes
#   bash benchmarks/gpu_check.sh --device cpu --tiny  # the dry run the test suite does
# On a machine without OpenMMLab packages and without network, wheels made by benchmarks/gpu_wheels.sh in
# .whl/ are installed first into /tmp/fdclip_site (nothing of the machine's own Python is changed).
set -uo pipefail
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
if ! "$PYTHON" -c 'import mmengine, mmcv, mmpretrain' 2>/dev/null; then
    if ! compgen -G '.whl/*.whl' > /dev/null; then
        echo "mmengine / mmcv / mmpretrain are not installed and .whl/ holds no wheels: run benchmarks/gpu_wheels.sh" >&2
        exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/fdclip_site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/fdclip_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
