#!/usr/bin/env bash
# The project's training recipe, end to end, on this machine's CPU:
#   Meta-World expert demos -> OAT tokenizer -> AR policy -> ONNX bundle (+ parity, fp16/int8)
#   -> closed-loop evaluation through the C++ runtime.
# It is what produced the bundle shipped in models/ and the figures in docs/.
#   scripts/recipe.sh [RUN_DIR]      knobs (environment): TASKS, EPISODES, TOK_STEPS, POL_STEPS,
#                                    POL_LAYERS, PRESET (cpu|paper), VARIANTS ("fp16 int8"; empty:
#                                    none), EVAL_EPISODES (0: no eval), DEVICE (cpu|cuda),
#                                    THREADS (torch threads per training; default: all cores),
#                                    DATA (lerobot: demos as a LeRobot v3.0 dataset, read back as a
#                                    user's own; npz: the compact demos file)
# Model and training sizes not set here are the defaults of the config dataclasses (--preset).
# Each stage records the exact command and the sha256 of its inputs in RUN_DIR/<stage>.stage.json
# and is reused only when both are unchanged; otherwise it is redone, and the log says which.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OAT=.venv/bin/oat-edge
RUN=${1:-runs/recipe}
TASKS=${TASKS:-reach-v3 push-v3 pick-place-v3}
EPISODES=${EPISODES:-200}
TOK_STEPS=${TOK_STEPS:-}
POL_STEPS=${POL_STEPS:-}
POL_LAYERS=${POL_LAYERS:-}
PRESET=${PRESET:-cpu}
VARIANTS=${VARIANTS-fp16 int8}
EVAL_EPISODES=${EVAL_EPISODES:-50}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-}
DATA=${DATA:-lerobot}
source scripts/stages.sh  # stage(), demo_paths, export_and_eval
demo_paths
mkdir -p "$RUN"
t0=$SECONDS

# shellcheck disable=SC2086  # TASKS and VARIANTS are word lists
stage 1/5 demos "$DEMOS_OUT" -- \
  $OAT demos --tasks $TASKS --episodes "$EPISODES" --out "$DEMOS" "${FORMAT[@]}" --workers 2 \
  --seed 1 --no-progress
stage 2/5 tokenizer "$RUN/tokenizer/tokenizer.pt" "${DEMOS_IN[@]}" -- \
  $OAT train-tokenizer "${SRC[@]}" --out "$RUN/tokenizer" --variant oat \
  --preset "$PRESET" ${TOK_STEPS:+--steps "$TOK_STEPS"} --device "$DEVICE" \
  ${THREADS:+--threads "$THREADS"} --no-progress --force
stage 3/5 policy "$RUN/policy/policy.pt" "${DEMOS_IN[@]}" "$RUN/tokenizer/tokenizer.pt" -- \
  $OAT train-policy "${SRC[@]}" --tokenizer "$RUN/tokenizer/tokenizer.pt" \
  --out "$RUN/policy" --preset "$PRESET" ${POL_STEPS:+--steps "$POL_STEPS"} \
  ${POL_LAYERS:+--layers "$POL_LAYERS"} --device "$DEVICE" ${THREADS:+--threads "$THREADS"} \
  --no-progress --force
export_and_eval  # stages 4 and 5 (scripts/stages.sh)
