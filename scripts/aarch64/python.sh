#!/usr/bin/env bash
# The oat_edge wheel cross-built for aarch64 and run under qemu-aarch64 in an arm64 Debian root:
#   1. cross-compile the wheel (scikit-build-core + the aarch64 toolchain file, against
#      libpython3.11-dev:arm64's headers) into dist/aarch64/
#   2. unpack it next to numpy and onnxruntime's aarch64 wheels and run, with Debian's arm64
#      python3.11: import oat_edge; Policy(bundle).act(obs) on the shipped bundle, then the
#      runtime's bad-input tests (tests/runtime/test_bad_inputs.py) and the doctor's tests
#      (tests/doctor: the ctypes ORT probe against the aarch64 library) on the tiny bundle.
# Usage: scripts/aarch64/python.sh [TINY_BUNDLE [SHIPPED_BUNDLE]]. Emulated timings are not aarch64's.
label="aarch64 python"
source "$(dirname "$0")/common.sh"
sysroot="$deps/sysroot"

step "dependencies: arm64 python3.11 root, numpy + onnxruntime aarch64 wheels"
scripts/aarch64/fetch_deps.sh --python "$deps"

step "cross-compile the wheel"
rm -rf dist/aarch64
# scikit-build-core names the wheel from _PYTHON_HOST_PLATFORM and the extension from
# SETUPTOOLS_EXT_SUFFIX, pybind11 from PYTHON_MODULE_EXTENSION; the headers are the arm64 ones, pyconfig.h included.
CMAKE_TOOLCHAIN_FILE="$repo/cmake/toolchains/aarch64-linux-gnu.cmake" \
_PYTHON_HOST_PLATFORM=linux-aarch64 SETUPTOOLS_EXT_SUFFIX=.cpython-311-aarch64-linux-gnu.so \
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w dist/aarch64 \
  -C build-dir=build/wheel-aarch64 \
  -C cmake.define.pybind11_DIR="$("$PY" -m pybind11 --cmakedir)" -C cmake.define.PYBIND11_USE_CROSSCOMPILING=ON \
  -C cmake.define.PYTHON_MODULE_EXTENSION=.cpython-311-aarch64-linux-gnu.so \
  -C cmake.define.Python_INCLUDE_DIR="$sysroot/usr/include/python3.11" \
  -C cmake.define.CMAKE_CXX_FLAGS="-isystem $sysroot/usr/include" .
whl="$(ls dist/aarch64/oat_edge-*-linux_aarch64.whl)"
echo "$whl: $(du -k "$whl" | cut -f1) KiB"

site=build/aarch64-python/site
rm -rf "$site" && mkdir -p "$site"
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$site"
"$PY" - "$site" <<'PYEOF'
import glob, sys
so = glob.glob(f"{sys.argv[1]}/oat_edge/_core*.so")
head = open(so[0], "rb").read(20) if so else b""
sys.exit(None if so and so[0].endswith("aarch64-linux-gnu.so") and int.from_bytes(head[18:20], "little") == 183
         else f"the wheel's _core is not an aarch64 extension: {so}")
PYEOF

# arm64 python3.11 under QEMU, seeing only the wheel, numpy, onnxruntime and pytest. It runs through
# a host-side wrapper that is also its sys.executable, so the tests' child interpreters run under
# QEMU too (no binfmt_misc registration needed).
wrapper="$repo/build/aarch64-python/bin/python3.11"
mkdir -p "$(dirname "$wrapper")"
printf '#!/bin/sh\nexec "%s" -L "%s" -0 "$0" "%s" "$@"\n' "$deps/qemu/usr/bin/qemu-aarch64" "$sysroot" \
  "$sysroot/usr/bin/python3.11" > "$wrapper"
chmod +x "$wrapper"
qpy() {
  PYTHONHOME="$sysroot/usr" PYTHONPATH="$repo/$site:$sysroot/site:$repo/tests:$repo/scripts/aarch64" \
    PYTHONDONTWRITEBYTECODE=1 "$wrapper" "$@"
}

step "import oat_edge; Policy(shipped bundle).act(obs) on aarch64"
qpy - "$shipped" <<'PYEOF'
import platform, sys
import numpy as np
import oat_edge
p = oat_edge.Policy(sys.argv[1])
i = p.info
chunk = p.act(np.zeros((i.n_obs_steps, i.obs_dim), np.float32), max_tokens=4, temperature=0)
ort = i.ort_library
assert np.all(np.isfinite(chunk)), chunk
assert "torch" not in sys.modules
print(f"{platform.machine()}: oat_edge {oat_edge.__version__}, ORT {ort}; act -> {chunk.shape}, "
      f"first row {' '.join(f'{x:.4f}' for x in chunk[0])}")
PYEOF

step "runtime bad-input tests and oat-edge doctor's tests on aarch64 (tiny bundle)"
(cd "$repo" && OAT_EDGE_TEST_BUNDLE="$tiny" CC=aarch64-linux-gnu-gcc qpy -m pytest -q --noconftest \
  -p prebuilt_bundle -p no:cacheprovider tests/runtime/test_bad_inputs.py tests/doctor)
step "aarch64 python: done in $((SECONDS - start)) s"
