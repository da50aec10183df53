#!/usr/bin/env bash
# Checks the launch scripts run before torchrun, so that a wrong argument or environment gets one line instead
# of a torchrun report per process. Sourced by dist_train.sh and dist_test.sh.

# require_file WHAT PATH: PATH must be an existing file (URLs, e.g. s3://, pass).
require_file() {
    if [[ "$2" != *://* && ! -f "$2" ]]; then
        echo "[error] $1 not found: $2" >&2
        exit 1
    fi
}

# require_count NAME VALUE: VALUE must be a positive integer.
require_count() {
    if ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
        echo "[error] $1 must be a positive integer, got '$2'" >&2
        exit 1
    fi
}

# require_python PYTHON: the interpreter must exist and import torch and mmengine.
require_python() {
    if ! command -v "$1" > /dev/null 2>&1; then
        echo "[error] no Python interpreter '$1'; set PYTHON=/path/to/env/bin/python" >&2
        exit 1
    fi
    if ! "$1" -c 'import torch, mmengine' > /dev/null 2>&1; then
        echo "[error] $1 ($(command -v "$1")) cannot import torch and mmengine: activate the environment" \
            "fdclip_mm is installed in, or set PYTHON=/path/to/env/bin/python" >&2
        exit 1
    fi
}
