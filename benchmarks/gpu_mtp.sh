#!/usr/bin/env bash
# Issue 24's numbers in one call on one GPU (a device lease is short): make mini on the GPU, distil its
# MTP layer, then MTP off / steps 1 / steps 3 at batch 1, 8, 32 side by side (benchmarks/gpu_mtp.py).
#   OUT=/some/dir bash benchmarks/gpu_mtp.sh [more gpu_mtp.py arguments, e.g. --held-out]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/dsv4rt-mtp}
mkdir -p "$out"
export PYTHONPATH=runtime:benchmarks${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 benchmarks/gpu_mtp.py --model /tmp/mini --make --draft /tmp/mini-draft --train \
  --json "$out/mtp.json" "$@" 2>&1 | tee "$out/mtp.log"
cp /tmp/mini-draft/distil.json "$out/" 2>/dev/null || true
