#!/usr/bin/env bash
# One-shot, idempotent setup on a fresh Debian/Ubuntu box (root or sudo):
#   system build tools -> .venv -> CPU torch -> build deps -> editable install (runs the CMake build).
# Re-running it is cheap: every step checks first. Knobs (environment):
#   PYTHON=python3.11          interpreter for the venv
#   OAT_EDGE_EXTRAS=test       extras to install (default train,test; a robot needs only "test" or "")
#   OAT_EDGE_SKIP_APT=1        never call apt-get (no root; tools already there)
#   OAT_EDGE_TORCH_INDEX=URL   index for torch only, e.g. https://download.pytorch.org/whl/cpu where
#                              the default index serves CUDA builds of torch (plain PyPI on Linux)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${OAT_EDGE_EXTRAS-train,test}"
VENV=.venv
log() { printf '\n[setup] %s\n' "$*"; }

# ---- 1. system packages (only the missing ones; nothing when all are there)
apt_pkgs=(build-essential python3-venv python3-dev git)
# Headless camera rendering (MUJOCO_GL=egl): the GL dispatch libraries and Mesa's software EGL driver.
apt_pkgs+=(libegl1 libopengl0 libegl-mesa0 libgl1-mesa-dri)
if [[ "${OAT_EDGE_SKIP_APT:-0}" != 1 ]] && command -v dpkg-query >/dev/null; then
  missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
      echo "setup: need ${missing[*]} but am not root and have no sudo: install them, or set OAT_EDGE_SKIP_APT=1" >&2
      exit 1
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
command -v c++ >/dev/null || { echo "setup: no C++ compiler (c++) on PATH: install build-essential" >&2; exit 1; }

# ---- 2. virtual environment
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip() { "$PY" -m pip "$@"; }
"$PY" - <<'PYEOF' || pip install -q --upgrade "pip>=23"
import sys, pip
sys.exit(0 if int(pip.__version__.split(".")[0]) >= 23 else 1)
PYEOF

# ---- 3. CPU torch first, pinned exactly: a looser spec can resolve to a CUDA build (GBs)
if [[ ",$EXTRAS," == *",train,"* ]]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '2.13.0' else 1)" 2>/dev/null; then
    log "pip install torch==2.13.0"
    pip install "torch==2.13.0" ${OAT_EDGE_TORCH_INDEX:+--index-url "$OAT_EDGE_TORCH_INDEX"}
  fi
fi

# ---- 4. build requirements (the editable install runs without build isolation so the CMake
#         tree under build/ is reused between runs)
"$PY" -c "import scikit_build_core, pybind11, cmake, ninja" 2>/dev/null ||
  { log "pip install build requirements"; pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja numpy; }

# ---- 5. the package itself: editable, incremental C++ build (H3's CMake bootstraps ORT headers)
spec="."
[[ -n "$EXTRAS" ]] && spec=".[$EXTRAS]"
log "pip install --no-build-isolation -e '$spec'"
pip install -q --no-build-isolation \
  -C cmake.define.OAT_EDGE_BUILD_TESTS=ON -C cmake.define.OAT_EDGE_BUILD_TOOLS=ON \
  -e "$spec"

"$PY" -c "import oat_edge, oat_edge._core; print('[setup] ok: oat_edge', oat_edge.__version__)"
