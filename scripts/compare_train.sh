#!/usr/bin/env bash
# Train every policy of the closed-loop comparison (docs/compare/) on the recipe's demos, with
# the recipe's budget and the same policy transformer, in parallel on one machine:
#   FAST (DCT+BPE tokens, AR), Bin (H_a x D_a tokens, AR), OATX and OAT without causal
#   registers (tokenizer variants + the same AR policy), OAT with the paper's pow2 nested
#   dropout, Diffusion Policy (DDPM); plus the reference-fidelity tokenizer (LayerNorm QK-norm)
#   and the paper-size preset (tokenizer + policy at --preset paper, pow2 dropout).
# The OAT row itself is the shipped recipe bundle (models/oat-metaworld-mt3).
#   scripts/compare_train.sh DEMOS RUN_DIR [cpu|cuda]     knobs: TOK_STEPS, POL_STEPS, PY, THREADS,
#                                                          ONLY (names to train, default: all of
#                                                          fast diffusion bin oatx nocausal pow2
#                                                          qk_norm paper)
# Logs go to RUN_DIR/<name>.log; the script fails if any run fails. Then export each policy
# (python -m oat_export.baselines for FAST/Bin/Diffusion Policy, oat-edge export for the OAT
# variants) and compare them: README "OAT against the baselines".
set -euo pipefail
DEMOS=${1:?usage: compare_train.sh DEMOS RUN_DIR [cpu|cuda]}
RUN=${2:?usage: compare_train.sh DEMOS RUN_DIR [cpu|cuda]}
DEVICE=${3:-cpu}
PY=${PY:-.venv/bin/python}
TOK_STEPS=${TOK_STEPS:-6000}
POL_STEPS=${POL_STEPS:-5000}
[[ -f $DEMOS ]] || { echo "compare_train: demos $DEMOS not found (oat-edge demos --tasks reach-v3 push-v3 pick-place-v3 --episodes 200 --seed 1 --out $DEMOS)" >&2; exit 2; }
mkdir -p "$RUN"
common=(--device "$DEVICE" --no-progress ${THREADS:+--threads "$THREADS"})

tok() {  # name variant [extra flags]
  local name=$1 variant=$2; shift 2
  $PY -m oat_edge.train.train_tokenizer --demos "$DEMOS" --out "$RUN/tok_$name" --variant "$variant" \
    --steps "$TOK_STEPS" "${common[@]}" "$@"
}
pol() {  # name [extra flags]  (AR policy over tok_<name>)
  local name=$1; shift
  $PY -m oat_edge.train.train_policy --demos "$DEMOS" --tokenizer "$RUN/tok_$name/tokenizer.pt" \
    --out "$RUN/pol_$name" --steps "$POL_STEPS" "${common[@]}" "$@"
}
ALL="fast diffusion bin oatx nocausal pow2 qk_norm paper"
ONLY=${ONLY:-$ALL}
for name in $ONLY; do
  [[ " $ALL " == *" $name "* ]] || { echo "compare_train: ONLY: unknown name '$name' (expected some of: $ALL)" >&2; exit 2; }
done

pids=()
names=()
start() {
  local name=$1; shift
  [[ " $ONLY " == *" $name "* ]] || return 0
  names+=("$name"); ( "$@" ) > "$RUN/$name.log" 2>&1 & pids+=($!)
}
start fast $PY -m oat_edge.baselines.fast_policy --demos "$DEMOS" --out "$RUN/pol_fast" --steps "$POL_STEPS" "${common[@]}"
start diffusion $PY -m oat_edge.baselines.diffusion_policy --demos "$DEMOS" --out "$RUN/pol_diffusion" --steps "$POL_STEPS" "${common[@]}"
start bin bash -c "$(declare -f tok pol); $(declare -p RUN DEMOS PY TOK_STEPS POL_STEPS common); tok bin bin && pol bin"
start oatx bash -c "$(declare -f tok pol); $(declare -p RUN DEMOS PY TOK_STEPS POL_STEPS common); tok oatx oatx && pol oatx"
start nocausal bash -c "$(declare -f tok pol); $(declare -p RUN DEMOS PY TOK_STEPS POL_STEPS common); tok nocausal oat-nocausal && pol nocausal"
start pow2 bash -c "$(declare -f tok pol); $(declare -p RUN DEMOS PY TOK_STEPS POL_STEPS common); tok pow2 oat --keep-k pow2 && pol pow2"
start paper bash -c "$(declare -f tok pol); $(declare -p RUN DEMOS PY TOK_STEPS POL_STEPS common); tok paper oat --preset paper && pol paper --preset paper"
start qk_norm bash -c "$(declare -f tok); $(declare -p RUN DEMOS PY TOK_STEPS common); tok rms oat && \
  $PY -m oat_edge.baselines.qk_norm --demos $DEMOS --like $RUN/tok_rms --out $RUN/qk_norm --device $DEVICE --no-progress"

status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then echo "ok     ${names[$i]}"; else echo "FAILED ${names[$i]} (see $RUN/${names[$i]}.log)"; status=1; fi
done
exit $status
