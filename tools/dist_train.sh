#!/usr/bin/env bash
# Distributed training with torchrun (torch.distributed.run) on one or several nodes.
#
# Usage: tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py options...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
#              PYTHON (python): the interpreter, also used to run torchrun.
# On a CPU-only machine the ranks use a gloo process group (see fdclip_mm/engine/distributed.py);
# torchrun sets OMP_NUM_THREADS=1 per rank unless it is set.
# The config file, the process count and the interpreter are checked before torchrun starts.

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-"python"}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

source "$TOOLS_DIR/launch_checks.sh"
require_file "config file" "$CONFIG"
require_count NPROC_PER_NODE "$GPUS"
require_python "$PYTHON"

PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
