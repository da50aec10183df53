#!/usr/bin/env bash
# The benchmark table on one NVIDIA H200: ViT-B/16 at 224, bf16 autocast, batch 128 and 256, 5 warm-up steps
# and the median of 20 interleaved steps per case, MFU against a bf16 matrix product measured in the same run,
# peak memory with and without activation checkpointing. Run from the repository root:
#   bash benchmarks/run_h200.sh [extra suite.py options, e.g. --compile]
set -euo pipefail
PYTHON=${PYTHON:-python}
SKIP=()
# the data-pipeline part reads the real JPEGs that scripts/fetch_dense_data.py writes
compgen -G 'data/dense/coco/train2017/*.jpg' > /dev/null || SKIP=(--skip data)
for BATCH in 128 256; do
    "$PYTHON" benchmarks/suite.py --device cuda --arch base --img-size 224 --patch 16 --batch "$BATCH" \
        --amp bf16 --warmup 5 --iters 20 --threads 16 --work-dir "work_dirs/benchmarks/h200_b$BATCH" "${SKIP[@]}" "$@"
done
