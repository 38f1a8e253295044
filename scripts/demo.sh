#!/usr/bin/env bash
# The main job on the embedded default: the OAT policy bundle shipped in models/ (trained by
# scripts/recipe.sh on Meta-World expert demos) drives the Meta-World simulator in closed loop
# through the C++ runtime (oat_edge.Policy.act) at a simulated 50 Hz, for k = 1, 2, 4, 8 tokens,
# and prints success rates next to the scripted expert's, act() latency and overruns.
#   scripts/demo.sh                 ~3 min: 10 episodes per task and k
#   EPISODES=50 scripts/demo.sh     the full evaluation (docs/eval)
#   OAT_EDGE_RETRAIN=1 scripts/demo.sh   retrain everything first with scripts/recipe.sh (~35 min)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-models/oat-metaworld-mt3}
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
