#!/usr/bin/env bash
# The main job on the embedded default: the OAT policy bundle shipped in models/ (trained by
# scripts/recipe.sh on Meta-World expert demos) drives the Meta-World simulator in closed loop
# through the C++ runtime (oat_edge.Policy.act) at a simulated 50 Hz, for k = 1, 2, 4, 8 tokens,
# and prints success rates next to the scripted expert's, act() latency and overruns. Then the
# camera bundle (models/oat-metaworld-pixels-mt3: two 64x64 cameras + the robot's own state, no
# object positions) on the same tasks, its frames rendered headless (EGL) and passed to act() by name.
#   scripts/demo.sh                 ~6 min: 10 episodes per task and k
#   EPISODES=50 scripts/demo.sh     the full evaluation (docs/eval, docs/cameras/eval_pixels)
#   OAT_EDGE_RETRAIN=1 scripts/demo.sh   retrain everything first with scripts/recipe.sh (~35 min)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-models/oat-metaworld-mt3}
PIXEL_BUNDLE=${PIXEL_BUNDLE:-models/oat-metaworld-pixels-mt3}
EPISODES=${EPISODES:-10}
if [[ "${OAT_EDGE_RETRAIN:-0}" == 1 ]]; then
  scripts/recipe.sh runs/recipe
  BUNDLE=runs/recipe/bundle
fi
.venv/bin/oat-edge inspect "$BUNDLE"
echo
# --force: each demo run replaces the previous demo's results
.venv/bin/oat-edge eval "$BUNDLE" --episodes "$EPISODES" --ks 1 2 4 8 --workers 2 --out runs/demo_eval \
  --force
echo
echo "== anytime inference: a 3 ms latency budget per replan instead of a fixed k"
.venv/bin/oat-edge eval "$BUNDLE" --episodes "$EPISODES" --ks 8 --latency-budget-ms 3 --workers 2 \
  --no-expert --out runs/demo_eval_budget --force

echo
echo "== from pixels: $PIXEL_BUNDLE (cameras corner + topview at 64x64, end-effector + gripper state)"
# --sync: inference inline in the simulated cycle, so that rendering on a small CPU does not
# delay the chunks (as in docs/cameras/eval_pixels); --no-expert: the expert row is printed above
.venv/bin/oat-edge inspect "$PIXEL_BUNDLE" | sed -n '/^inputs/,/^obs layout/p'
.venv/bin/oat-edge eval "$PIXEL_BUNDLE" --episodes "$EPISODES" --ks 1 8 --workers 2 --sync --no-expert \
  --out runs/demo_eval_pixels --force
