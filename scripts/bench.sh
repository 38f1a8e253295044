#!/usr/bin/env bash
# Latency benchmark, side by side in one run (see python/oat_edge/measure/bench.py), then heap
# allocations per generated token measured by the C++ tool under an LD_PRELOAD malloc counter.
#   scripts/bench.sh [--checkpoint runs/recipe/policy/policy.pt] [--iters 200] [--threads 1]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OAT_EDGE_BENCH_OUT:-docs/bench}
mkdir -p "$OUT"
bundle=$(mktemp -d)/bundle
trap 'rm -rf "$(dirname "$bundle")"' EXIT

$PY -m oat_edge.measure.bench --out "$OUT/bench_cpu.json" --bundle-out "$bundle" "$@"

tools="build/$($PY -c 'import sys; print(sys.implementation.cache_tag)')/cpp/tools"
if [[ -x "$tools/oat_edge_run" && -f "$tools/liboat_edge_malloc_counter.so" ]]; then
  export OAT_EDGE_ORT_LIBRARY=${OAT_EDGE_ORT_LIBRARY:-$($PY -c 'from oat_edge.ort_library import find_ort_library as f; print(f(None))')}
  echo
  echo "== heap allocations per act() / per generated token (C++ tool, malloc counter preloaded)"
  LD_PRELOAD="$tools/liboat_edge_malloc_counter.so" "$tools/oat_edge_run" "$bundle" --random --greedy \
    --iters 100 --threads 1 --rt-memory | tee "$OUT/allocations.txt"
else
  echo "bench: $tools/oat_edge_run not built (make setup builds it); skipped the allocation count" >&2
fi
