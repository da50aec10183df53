#!/usr/bin/env bash
# Wheels that benchmarks/gpu_check.sh installs on a GPU machine without network (Python 3.12 with torch, CUDA,
# numpy, OpenCV and matplotlib already there, as on the lent H100 / H200 machines): mmengine, mmpretrain and
# their pure-Python needs, mmcv-lite 2.1.0 (mmcv without its compiled ops, a pure-Python wheel on PyPI: the
# distiller, the students and the teachers need no mmcv op; mmdet's RoIAlign / NMS do) and simplejpeg (the
# loader workers' JPEG decoder; a binary wheel for CPython 3.12). Written to .whl/ (git-ignored; 3.5 MB), to
# carry with the working tree. Run from the repository root, on a machine with network:
#   bash benchmarks/gpu_wheels.sh
set -euo pipefail
PYTHON=${PYTHON:-python3}
DEST=${DEST:-.whl}
mkdir -p "$DEST"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# exact versions of the tested stack (requirements/pinned.txt), none of their dependencies
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" \
    mmengine==0.10.7 mmpretrain==1.2.0 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0 \
    mat4py==0.6.0 modelindex==0.0.2 model-index==0.1.11 ordered-set==4.1.0 mmcv-lite==2.1.0 simplejpeg==1.9.0
ls -l "$DEST"
du -sh "$DEST"
