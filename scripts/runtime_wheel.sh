#!/usr/bin/env bash
# The robot's install: build the oat_edge wheel (no tests, no tools), install it into a fresh venv
# with nothing but its own dependencies (numpy + onnxruntime: no torch, no training extras), and
# measure what a robot gets: wheel size, installed size, import time, first act() of a bundle.
# Usage: scripts/runtime_wheel.sh [BUNDLE]   (default models/oat-metaworld-mt3)
# Output: dist/oat_edge-*.whl and build/runtime-venv (a venv that never saw torch).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
bundle="$(realpath "${1:-models/oat-metaworld-mt3}")"
PY="${PY:-$repo/.venv/bin/python}"
PYTHON="${PYTHON:-python3}"
export PATH="$repo/.venv/bin:$PATH"
venv=build/runtime-venv

echo "[runtime wheel] building (its own CMake tree: the editable dev tree stays as it is)"
rm -f dist/oat_edge-*.whl
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w dist -C build-dir="build/wheel-{cache_tag}" .
whl="$(ls dist/oat_edge-*.whl)"

echo "[runtime wheel] installing $whl into a fresh $venv"
rm -rf "$venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q "$whl"
"$venv/bin/python" - "$whl" "$venv" "$bundle" <<'EOF'
import os, subprocess, sys, time
whl, venv, bundle = sys.argv[1:]
py = os.path.join(venv, "bin", "python")
site = subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
dists = sorted(d.split("-")[0] for d in os.listdir(site) if d.endswith(".dist-info"))
heavy = [d for d in dists if d.lower() in ("torch", "onnx", "onnxscript", "metaworld", "gymnasium", "matplotlib")]
if heavy:
    sys.exit(f"the runtime install pulled in {heavy}")

def du(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)

def best_of(code, n=5):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([py, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3

bare = best_of("pass")
imp = best_of("import oat_edge")
act_code = ("import numpy as np, oat_edge, sys; p = oat_edge.Policy(%r); "
            "p.act(np.zeros((p.info.n_obs_steps, p.info.obs_dim), np.float32)); "
            "bad = [m for m in ('torch', 'onnx', 'onnxscript') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)") % bundle
first_act = best_of(act_code, n=3)
oat = sum(du(os.path.join(site, d)) for d in os.listdir(site) if d.startswith("oat_edge"))
print(f"wheel            {os.path.basename(whl)}: {os.path.getsize(whl) / 1024:.0f} KiB")
print(f"installed        {du(site) / 2**20:.0f} MiB in {site} (oat_edge itself {oat / 2**20:.1f} MiB)")
print(f"distributions    {', '.join(dists)}")
print(f"import oat_edge  {imp - bare:.0f} ms beyond a bare interpreter start ({bare:.0f} ms), best of 5")
print(f"first act()      {first_act - bare:.0f} ms from interpreter start to the first action chunk of "
      f"{os.path.basename(bundle)} (load + warm-up + act), best of 3; torch never imported")
EOF
