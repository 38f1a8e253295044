#!/usr/bin/env bash
# Tokenizer report (docs/tokenizer_report): held-out reconstruction MSE vs prefix length k for
# OAT, OATX (no nested dropout), OAT without causal registers, and Bin, all trained with the
# recipe settings at 2000 tokenizer steps on the same Meta-World demos (3 tasks x 50 episodes),
# two trainings at a time.
#   scripts/tokenizer_report.sh [RUN_DIR] [OUT_DIR]        (~25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN=${1:-runs/tokenizer_report}
OUT=${2:-docs/tokenizer_report}
mkdir -p "$RUN"
[[ -f $RUN/demos.npz ]] || $PY -m oat_edge.train.demos --tasks reach-v3 push-v3 pick-place-v3 \
  --episodes 50 --out "$RUN/demos.npz" --workers 2 --seed 0
train() {  # one variant, one thread: two run side by side on the two cores
  [[ -f $RUN/tok_$1/tokenizer.pt ]] || $PY -m oat_edge.train.train_tokenizer --demos "$RUN/demos.npz" \
    --out "$RUN/tok_$1" --variant "$1" --steps 2000 --threads 1 --no-progress > "$RUN/tok_$1.log" 2>&1
}
train oat & train oatx & wait
train oat-nocausal & train bin & wait
$PY -m oat_edge.measure.tokenizer_report --demos "$RUN/demos.npz" \
  --tokenizers "$RUN"/tok_oat "$RUN"/tok_oatx "$RUN"/tok_oat-nocausal "$RUN"/tok_bin --out "$OUT" --force
