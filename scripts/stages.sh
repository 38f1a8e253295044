# Sourced by scripts/recipe.sh and scripts/recipe_pixels.sh (after they set PY, OAT, RUN and their
# knobs): a recipe's stages, each redone only when its command or inputs changed.
#   stage N/M NAME OUTPUT INPUT... -- COMMAND...
# runs COMMAND unless OUTPUT exists and RUN/NAME.stage.json records the same command and the same
# sha256 of every INPUT; the log says whether the stage was reused or why it was redone.

record() {  # record NAME INPUT... -- COMMAND...: the JSON that identifies a stage's work
  $PY - "$@" <<'EOF'
import hashlib, json, sys
args = sys.argv[1:]
cut = args.index("--")
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
print(json.dumps({"stage": args[0], "command": args[cut + 1:],
                  "inputs": {p: sha256(p) for p in args[1:cut]}}, indent=1, sort_keys=True))
EOF
}

stage() {  # stage N/M NAME OUTPUT INPUT... -- COMMAND...
  local n=$1 name=$2 out=$3
  shift 3
  local inputs=()
  while [[ $1 != -- ]]; do inputs+=("$1"); shift; done
  shift
  local rec="$RUN/$name.stage.json" want
  want=$(record "$name" "${inputs[@]}" -- "$@")
  if [[ -e $out && -f $rec && "$(cat "$rec")" == "$want" ]]; then
    echo "== $n $name: reused $out (same command and inputs as recorded in $rec)"
    return
  fi
  if [[ -e $out && -f $rec ]]; then
    echo "== $n $name: redo, the command or its inputs changed since $rec:"
    diff <(printf '%s\n' "$want") "$rec" | sed 's/^/     /' || true
  elif [[ -e $out ]]; then
    echo "== $n $name: redo, $out has no record of how it was made"
  else
    echo "== $n $name"
  fi
  echo "   \$ $*"
  local t=$SECONDS
  rm -f "$rec"  # a stage that fails or is interrupted leaves no record: it is redone next time
  "$@"
  printf '%s\n' "$want" > "$rec.tmp" && mv "$rec.tmp" "$rec"
  echo "   $name took $(( (SECONDS - t) / 60 )) min $(( (SECONDS - t) % 60 )) s"
}

# Stages 4/5 and 5/5 of both recipes: export RUN/policy/policy.pt to RUN/bundle (+ VARIANTS), then,
# when EVAL_EPISODES > 0, evaluate it in closed loop into RUN/eval; t0 = the recipe's start.
export_and_eval() {
  # shellcheck disable=SC2086
  stage 4/5 export "$RUN/bundle/model.onnx" "$RUN/policy/policy.pt" -- \
    $OAT export --checkpoint "$RUN/policy/policy.pt" --out "$RUN/bundle" \
    ${VARIANTS:+--variants $VARIANTS}
  if (( EVAL_EPISODES > 0 )); then
    stage 5/5 eval "$RUN/eval/results.json" "$RUN"/bundle/*.onnx -- \
      $OAT eval "$RUN/bundle" --episodes "$EVAL_EPISODES" --ks 1 2 4 8 --workers 2 \
      --out "$RUN/eval" --force --no-progress
    results=", results $RUN/eval/results.md"
  else
    echo "== 5/5 eval: skipped (EVAL_EPISODES=0)"
    results=""
  fi
  echo "recipe done in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s: bundle $RUN/bundle$results"
}

# Where the recipe's demos go, by DATA: npz (one file, frames as rendered) or lerobot (a LeRobot
# v3.0 dataset, videos included, read back as a user's own). Sets DEMOS (`oat-edge demos --out`),
# DEMOS_OUT (the file stage 1 is judged by), DEMOS_IN (what later stages hash: metadata and the
# data file), FORMAT (the demos command's flags) and SRC (the trainers' data flags).
demo_paths() {
  if [[ $DATA == lerobot ]]; then
    DEMOS=$RUN/demos_lerobot
    DEMOS_OUT=$DEMOS/meta/info.json
    DEMOS_IN=("$DEMOS_OUT" "$DEMOS/data/chunk-000/file-000.parquet")
    FORMAT=(--format lerobot --overwrite)
    SRC=(--dataset "$DEMOS")
  else
    DEMOS=$RUN/demos.npz DEMOS_OUT=$RUN/demos.npz DEMOS_IN=("$RUN/demos.npz") FORMAT=()
    SRC=(--demos "$DEMOS")
  fi
}
