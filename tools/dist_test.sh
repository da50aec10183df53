#!/usr/bin/env bash
# Distributed testing with torchrun (torch.distributed.run) on one or several nodes.
#
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py options...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1),
#              PYTHON (python): the interpreter, also used to run torchrun.
# The config and checkpoint files, the process count and the interpreter are checked before torchrun starts.

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-"python"}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

source "$TOOLS_DIR/launch_checks.sh"
require_file "config file" "$CONFIG"
require_file "checkpoint file" "$CHECKPOINT"
require_count NPROC_PER_NODE "$GPUS"
require_python "$PYTHON"

PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
