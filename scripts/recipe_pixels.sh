#!/usr/bin/env bash
# The camera policy recipe, end to end, on this machine's CPU (or DEVICE=cuda):
#   Meta-World expert demos rendered through two cameras -> OAT tokenizer (actions only)
#   -> camera policy (image encoder per camera + AR policy) -> ONNX bundle with named uint8
#   inputs (+ parity) -> closed-loop evaluation from pixels through the C++ runtime.
#   scripts/recipe_pixels.sh [RUN_DIR]   knobs (environment): TASKS, EPISODES, CAMERAS,
#                                        IMAGE_SIZE, TOK_STEPS, TOKENIZER (an existing
#                                        tokenizer.pt: skips training one), POL_STEPS, BATCH,
#                                        VARIANTS (empty: none), EVAL_EPISODES (0: no eval),
#                                        DEVICE (cpu|cuda), THREADS (torch threads per training;
#                                        default 1: on a shared 2-core VM two threads ran 10x
#                                        slower, spin-waiting; 0: all cores), RANKS (data-parallel
#                                        policy training processes, torchrun; default 2 on cpu, 1
#                                        on cuda), AUX (features that supervise the image encoder
#                                        in training, default the simulator's state; empty: none),
#                                        DATA (npz: frames as rendered; lerobot: one video per
#                                        camera, read back as a user's own)
# The defaults fit about 60 minutes on a 2-core CPU (docs/CAMERAS.md, "Recipe").
# Each stage records the exact command and the sha256 of its inputs in RUN_DIR/<stage>.stage.json
# and is reused only when both are unchanged; otherwise it is redone, and the log says which.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OAT=.venv/bin/oat-edge
RUN=${1:-runs/recipe_pixels}
TASKS=${TASKS:-reach-v3 push-v3 pick-place-v3}
EPISODES=${EPISODES:-300}
CAMERAS=${CAMERAS:-corner topview}
IMAGE_SIZE=${IMAGE_SIZE:-64}
TOK_STEPS=${TOK_STEPS:-1500}
TOKENIZER=${TOKENIZER:-}
POL_STEPS=${POL_STEPS:-7000}
BATCH=${BATCH:-128}
VARIANTS=${VARIANTS-}
EVAL_EPISODES=${EVAL_EPISODES:-10}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-1}
if [[ $DEVICE == cpu ]]; then RANKS=${RANKS:-2}; else RANKS=${RANKS:-1}; fi
AUX=${AUX-observation.environment_state}
DATA=${DATA:-npz}
export MUJOCO_GL=${MUJOCO_GL:-egl}
source scripts/stages.sh  # stage(), demo_paths, export_and_eval
demo_paths
mkdir -p "$RUN"
t0=$SECONDS

# shellcheck disable=SC2086  # TASKS, CAMERAS and VARIANTS are word lists
stage 1/5 demos "$DEMOS_OUT" -- \
  $OAT demos --tasks $TASKS --episodes "$EPISODES" --cameras $CAMERAS --image-size "$IMAGE_SIZE" \
  --out "$DEMOS" "${FORMAT[@]}" --workers 2 --seed 1 --no-progress
if [[ -n $TOKENIZER ]]; then
  TOK=$TOKENIZER
  echo "== 2/5 tokenizer: using $TOK (TOKENIZER)"
else
  TOK=$RUN/tokenizer/tokenizer.pt
  stage 2/5 tokenizer "$TOK" "${DEMOS_IN[@]}" -- \
    $OAT train-tokenizer "${SRC[@]}" --out "$RUN/tokenizer" --variant oat --steps "$TOK_STEPS" \
    --device "$DEVICE" ${THREADS:+--threads "$THREADS"} --no-progress --force
fi
if (( RANKS > 1 )); then  # one process per rank, THREADS torch threads each
  TRAIN_POLICY=(env OMP_NUM_THREADS="${THREADS:-1}" .venv/bin/torchrun --standalone
                --nproc_per_node "$RANKS" -m oat_edge.train.train_policy)
else
  TRAIN_POLICY=($OAT train-policy)
fi
# shellcheck disable=SC2086
stage 3/5 policy "$RUN/policy/policy.pt" "${DEMOS_IN[@]}" "$TOK" -- \
  "${TRAIN_POLICY[@]}" "${SRC[@]}" --tokenizer "$TOK" --cameras $CAMERAS --out "$RUN/policy" \
  --steps "$POL_STEPS" --batch "$BATCH" --device "$DEVICE" ${THREADS:+--threads "$THREADS"} \
  ${AUX:+--aux-keys $AUX} --no-progress --force
export_and_eval  # stages 4 and 5 (scripts/stages.sh)
