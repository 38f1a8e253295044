#!/usr/bin/env bash
# make test-aarch64: the C++ core, its CTest binaries, the control-loop example and oat_edge_run
# cross-built for aarch64 (CMake preset "aarch64"), CTest run under qemu-aarch64 on the tiny bundle
# and on the shipped bundle, then greedy tokens and actions compared with an x86-64 build of the
# same tree (preset "release"). The tiny camera bundle (third argument) runs the named-input test.
# Usage: scripts/aarch64/test.sh [TINY_BUNDLE [SHIPPED_BUNDLE [TINY_PIXEL_BUNDLE]]]
# Emulated timings say nothing about aarch64 speed: nothing here reports one.
label=test-aarch64
source "$(dirname "$0")/common.sh"
JOBS="${JOBS:-2}"

pixel="$(realpath -m "${3:-$repo/build/tiny_pixel_bundle}")"
[[ -f "$pixel/model.onnx" ]] || {
  echo "$label: no camera bundle at $pixel (make build/tiny_pixel_bundle/model.onnx exports the tiny one)" >&2
  exit 2; }
# Private copies: `make test-cpp` in the same tree may re-export build/tiny_*bundle mid-run.
rm -rf build/aarch64/tiny_bundle build/aarch64/tiny_pixel_bundle && mkdir -p build/aarch64
cp -r "$tiny" build/aarch64/tiny_bundle && cp -r "$pixel" build/aarch64/tiny_pixel_bundle
tiny="$repo/build/aarch64/tiny_bundle" pixel="$repo/build/aarch64/tiny_pixel_bundle"

step "dependencies (cached in $deps)"
scripts/aarch64/fetch_deps.sh "$deps"
qemu="$deps/qemu/usr/bin/qemu-aarch64"
sysroot=/usr/aarch64-linux-gnu

step "cross build: cmake --preset aarch64"
cmake --preset aarch64 >/dev/null
cmake --build --preset aarch64 -j "$JOBS"
"$PY" - build/aarch64/cpp/tools/oat_edge_run <<'EOF'
import sys
head = open(sys.argv[1], "rb").read(20)  # ELF e_machine 183 = EM_AARCH64
sys.exit(None if head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183 else
         f"{sys.argv[1]} is not an aarch64 ELF binary: the toolchain file was not used")
EOF

# Every test on the tiny bundle (some tables are written for its dimensions), then the tests that
# run a whole bundle on the shipped one.
set -o pipefail
for run in "$tiny:" "$shipped:test_policy_e2e|test_cmake_package"; do
  b="${run%%:*}" only="${run#*:}"
  step "ctest --preset aarch64 under $(basename "$qemu"), bundle $b${only:+ ($only)}"
  log="build/aarch64/ctest-$(basename "$b").log"
  OAT_EDGE_TEST_BUNDLE="$b" OAT_EDGE_TEST_PIXEL_BUNDLE="$pixel" ctest --preset aarch64 -j "$JOBS" ${only:+-R "$only"} 2>&1 | grep -v "W:onnxruntime" | tee "$log"
  # a skipped end-to-end test (no bundle, no ORT) must not pass for a run
  if grep -q "Skipped\|Not Run" "$log"; then echo "test-aarch64: a test was skipped (see above)" >&2; exit 1; fi
done

step "oat_edge_run (aarch64) loads the shipped bundle"
OAT_EDGE_ORT_LIBRARY="$deps/ort/libonnxruntime.so" "$qemu" -L "$sysroot" build/aarch64/cpp/tools/oat_edge_run \
  "$shipped" --greedy --tokens 8 --iters 2 | sed -n '1,3p'

step "greedy_dump for x86-64 (preset release) and aarch64"
cmake --preset release >/dev/null
cmake --build --preset release -j "$JOBS" --target oat_edge_core
out=build/aarch64/compare
mkdir -p "$out"
# each tree's generated headers (version.h) next to the public ones
c++ -O2 -std=c++17 -Icpp/include -Ibuild/release/include scripts/aarch64/greedy_dump.cpp \
  build/release/liboat_edge_core.a -ldl -pthread -o "$out/greedy_dump_x86_64"
aarch64-linux-gnu-g++ -O2 -std=c++17 -Icpp/include -Ibuild/aarch64/include scripts/aarch64/greedy_dump.cpp \
  build/aarch64/liboat_edge_core.a -ldl -pthread -o "$out/greedy_dump_aarch64"
x86_ort="$("$PY" -c 'from oat_edge.ort_library import find_ort_library as f; print(f(None))')"

for b in "$tiny" "$shipped"; do
  step "x86-64 vs aarch64: greedy tokens and actions"
  OAT_EDGE_ORT_LIBRARY="$x86_ort" "$PY" scripts/aarch64/compare_arch.py "$b" \
    --x86 "$out/greedy_dump_x86_64" --aarch64 "$out/greedy_dump_aarch64" \
    --qemu "$qemu" --sysroot "$sysroot" --ort-aarch64 "$deps/ort/libonnxruntime.so" --n 64
done
step "test-aarch64: all passed in $((SECONDS - start)) s (wall time of this run)"
