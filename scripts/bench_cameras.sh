#!/usr/bin/env bash
# Camera bundle latency, stage by stage (see python/oat_edge/measure/camera_bench.py): a random-weight
# two-camera policy of the pixel recipe's sizes at the shipped 64x64 and at 224x224, C++ runtime vs
# PyTorch eager interleaved in one run each, batch 1, one thread.
#   scripts/bench_cameras.sh [--iters 200] [--ks 1 2 4 8]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OAT_EDGE_BENCH_OUT:-docs/bench}/cameras
mkdir -p "$OUT"
for size in 64 224; do
  echo "== two cameras at ${size}x${size}"
  $PY -m oat_edge.measure.bench --camera-reference "$size" --out "$OUT/camera_${size}.json" "$@"
done
