# Sourced by scripts/aarch64/test.sh and python.sh after they set `label`: the repository root,
# the two bundles (arguments 1 and 2, checked), the venv's tools, where the aarch64 dependencies
# live, and step() for timed progress lines.
set -euo pipefail
repo="$(realpath "$(dirname "${BASH_SOURCE[0]}")/../..")"
tiny="$(realpath -m "${1:-$repo/build/tiny_bundle}")"      # relative to the caller's directory
shipped="$(realpath -m "${2:-$repo/models/oat-metaworld-mt3}")"
cd "$repo"
PY="${PY:-$repo/.venv/bin/python}"
export PATH="$repo/.venv/bin:$PATH"  # cmake, ctest, ninja from the venv when the system lacks them
deps="$repo/.deps/aarch64"
for b in "$tiny" "$shipped"; do
  [[ -f "$b/model.onnx" ]] || {
    echo "$label: no bundle at $b (expected a directory with model.onnx; make build/tiny_bundle/model.onnx exports the tiny one)" >&2
    exit 2; }
done
start=$SECONDS
step() { printf '\n[%s %4ds] %s\n' "$label" $((SECONDS - start)) "$*"; }
