#!/usr/bin/env bash
# The project's training recipe, end to end, on this machine's CPU:
#   Meta-World expert demos -> OAT tokenizer -> AR policy -> ONNX bundle (+ parity, fp16/int8)
#   -> closed-loop evaluation through the C++ runtime.
# It is what produced the bundle shipped in models/ and the figures in docs/.
#   scripts/recipe.sh [RUN_DIR]      knobs (environment): TASKS, EPISODES, TOK_STEPS, POL_STEPS,
#                                    POL_LAYERS, EVAL_EPISODES, DEVICE (cpu|cuda), DATA (lerobot|npz)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN=${1:-runs/recipe}
TASKS=${TASKS:-reach-v3 push-v3 pick-place-v3}
EPISODES=${EPISODES:-200}
TOK_STEPS=${TOK_STEPS:-6000}
POL_STEPS=${POL_STEPS:-5000}
POL_LAYERS=${POL_LAYERS:-4}
EVAL_EPISODES=${EVAL_EPISODES:-50}
DEVICE=${DEVICE:-cpu}
DATA=${DATA:-lerobot}   # lerobot: demos as a LeRobot v3.0 dataset; npz: the compact demos file
mkdir -p "$RUN"
stamp() { date +%s; }
t0=$(stamp)

echo "== 1/5 demos: $TASKS x $EPISODES episodes ($DATA)"
if [[ $DATA == lerobot ]]; then  # a LeRobot v3.0 dataset, read back like a user's own
  SRC=(--dataset "$RUN/demos_lerobot")
  [[ -f $RUN/demos_lerobot/meta/info.json ]] || $PY -m oat_edge.train.demos --tasks $TASKS \
    --episodes "$EPISODES" --format lerobot --out "$RUN/demos_lerobot" --workers 2 --seed 1
else
  SRC=(--demos "$RUN/demos.npz")
  [[ -f $RUN/demos.npz ]] || $PY -m oat_edge.train.demos --tasks $TASKS --episodes "$EPISODES" \
    --out "$RUN/demos.npz" --workers 2 --seed 1
fi
t1=$(stamp)

echo "== 2/5 OAT tokenizer ($TOK_STEPS steps)"
[[ -f $RUN/tokenizer/tokenizer.pt ]] || $PY -m oat_edge.train.train_tokenizer "${SRC[@]}" \
  --out "$RUN/tokenizer" --variant oat --steps "$TOK_STEPS" --device "$DEVICE"
echo "== 3/5 AR policy ($POL_STEPS steps, $POL_LAYERS layers)"
[[ -f $RUN/policy/policy.pt ]] || $PY -m oat_edge.train.train_policy "${SRC[@]}" \
  --tokenizer "$RUN/tokenizer/tokenizer.pt" --out "$RUN/policy" --steps "$POL_STEPS" \
  --layers "$POL_LAYERS" --device "$DEVICE"
t2=$(stamp)
echo "   training took $(( (t2 - t1) / 60 )) min $(( (t2 - t1) % 60 )) s (tokenizer + policy)"

echo "== 4/5 export (parity check built in) + fp16/int8 variants"
rm -rf "$RUN/bundle" "$RUN"/bundle_*
$PY -m oat_export --checkpoint "$RUN/policy/policy.pt" --out "$RUN/bundle" --variants fp16 int8

echo "== 5/5 closed-loop eval through the C++ runtime: $EVAL_EPISODES episodes per task and k"
.venv/bin/oat-edge eval "$RUN/bundle" --episodes "$EVAL_EPISODES" --ks 1 2 4 8 --workers 2 --out "$RUN/eval"
echo "recipe done in $(( ($(stamp) - t0) / 60 )) min: bundle $RUN/bundle, results $RUN/eval/results.md"
