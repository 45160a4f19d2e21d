#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): ResNet-50 at 224 px for B = 8, 64, 256 with every attack at a small
# budget, the seed-batching ratio and TF32/bf16 timings, written to a folder (argument, or $OUT).
#   scripts/gpu_check.sh [--time-limit S] [OUT]          on a CUDA machine, within 8 minutes
#   scripts/gpu_check.sh --device cpu --tiny OUT         the CPU dry run the test suite runs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" scripts/gpu_check.py "$@"
