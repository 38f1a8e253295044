# oat_edge developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PY    := .venv/bin/python
JOBS  ?= 2
# Same tree as pyproject's build-dir = "build/{cache_tag}" (the editable install builds there)
BUILD_DIR = build/$(shell $(PY) -c 'import sys; print(sys.implementation.cache_tag)')
ASAN_DIR  := build/asan
CMAKE_DEFS := -C cmake.define.OAT_EDGE_BUILD_TESTS=ON -C cmake.define.OAT_EDGE_BUILD_TOOLS=ON
export CMAKE_BUILD_PARALLEL_LEVEL := $(JOBS)
# cmake, ctest and ninja come from the venv (pip packages) when the system lacks them
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup build test lint format test-cpp test-py demo bench asan clean

## setup: system tools, .venv, CPU torch, editable install + C++ build (idempotent)
setup:
	scripts/setup.sh

## build: incremental rebuild of the C++ core + _core after a C++ change (no dependency changes)
build:
	$(PY) -m pip install -q --no-build-isolation --no-deps $(CMAKE_DEFS) -e .

## test: setup (cheap when done) + lint + C++ unit tests + pytest
test: setup lint test-cpp test-py

# C and C++ sources as git knows them (build trees and fetched headers are never formatted)
CXX_SOURCES = $(shell git ls-files '*.cpp' '*.h' '*.c')

## lint: ruff (pycodestyle, pyflakes, import order, bugbear) and clang-format, checked only;
## `make format` applies their fixes
lint:
	.venv/bin/ruff check .
	@echo "clang-format --dry-run --Werror ($(words $(CXX_SOURCES)) C/C++ files)"
	@.venv/bin/clang-format --dry-run --Werror $(CXX_SOURCES)

format:
	.venv/bin/ruff check --fix .
	.venv/bin/clang-format -i $(CXX_SOURCES)

# The C++ end-to-end test runs a tiny random-weight bundle, exported by the same code as pytest's.
TINY_BUNDLE := build/tiny_bundle
$(TINY_BUNDLE)/model.onnx: tests/fixtures/tiny_bundle.py $(wildcard export/oat_export/*.py) $(wildcard python/oat_edge/train/*.py)
	rm -rf $(TINY_BUNDLE)
	$(PY) -W ignore tests/fixtures/tiny_bundle.py $(TINY_BUNDLE)
TINY_PIXEL_BUNDLE := build/tiny_pixel_bundle
$(TINY_PIXEL_BUNDLE)/model.onnx: tests/fixtures/tiny_pixel_bundle.py tests/fixtures/tiny_bundle.py $(wildcard export/oat_export/*.py) $(wildcard python/oat_edge/train/*.py)
	rm -rf $(TINY_PIXEL_BUNDLE)
	$(PY) -W ignore tests/fixtures/tiny_pixel_bundle.py $(TINY_PIXEL_BUNDLE)

# The ORT library the C++ tests load, found at test time (the only place it is looked up for them):
# on a fresh venv the onnxruntime wheel is installed only after the CMake configure step.
ORT_LIB = $(shell $(PY) -c 'from oat_edge.ort_library import find_ort_library as f; print(f(None))' 2>/dev/null)

test-cpp: $(TINY_BUNDLE)/model.onnx $(TINY_PIXEL_BUNDLE)/model.onnx
	@if [[ -f "$(BUILD_DIR)/CTestTestfile.cmake" ]]; then \
	  OAT_EDGE_ORT_LIBRARY="$${OAT_EDGE_ORT_LIBRARY:-$(ORT_LIB)}" \
	  OAT_EDGE_TEST_BUNDLE="$(CURDIR)/$(TINY_BUNDLE)" OAT_EDGE_TEST_PIXEL_BUNDLE="$(CURDIR)/$(TINY_PIXEL_BUNDLE)" ctest --test-dir "$(BUILD_DIR)" --output-on-failure -j $(JOBS); \
	else echo "test-cpp: no CTest tree in $(BUILD_DIR) (run make setup)" >&2; exit 1; fi

test-py:
	$(PY) -m pytest -q tests

## demo: the end-to-end job (train -> export -> run on Meta-World); see scripts/demo.sh
demo: setup
	scripts/demo.sh

## bench: latency of the C++ runtime vs the onnxruntime-Python loop vs PyTorch (eager, torch.compile), each
## beside its lower bound on this machine; then camera bundles stage by stage at 64x64 and 224x224
bench: setup
	scripts/bench.sh
	scripts/bench_cameras.sh

## asan: C++ core + unit tests under AddressSanitizer/UBSan (leak checks on) in a separate tree;
## the e2e test runs the tiny bundle, and a skipped test (no bundle / no ORT) fails the target
## (configure, build and test settings: the "asan" presets in CMakePresets.json)
asan: $(TINY_BUNDLE)/model.onnx $(TINY_PIXEL_BUNDLE)/model.onnx
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	set -o pipefail; OAT_EDGE_TEST_BUNDLE="$(CURDIR)/$(TINY_BUNDLE)" \
	  OAT_EDGE_TEST_PIXEL_BUNDLE="$(CURDIR)/$(TINY_PIXEL_BUNDLE)" \
	  OAT_EDGE_ORT_LIBRARY="$${OAT_EDGE_ORT_LIBRARY:-$(ORT_LIB)}" \
	  ctest --preset asan | tee $(ASAN_DIR)/ctest.log
	@if grep -q "Skipped\|Not Run" $(ASAN_DIR)/ctest.log; then echo "asan: a test was skipped (see above)" >&2; exit 1; fi

.PHONY: test-aarch64
## test-aarch64: cross-build for aarch64 (preset "aarch64"), CTest under qemu-aarch64 on the tiny
## bundles (state and camera) and the shipped bundle, greedy tokens/actions compared with x86-64; fetches its tools into .deps/aarch64
test-aarch64: $(TINY_BUNDLE)/model.onnx $(TINY_PIXEL_BUNDLE)/model.onnx
	JOBS=$(JOBS) scripts/aarch64/test.sh $(TINY_BUNDLE) models/oat-metaworld-mt3 $(TINY_PIXEL_BUNDLE)

.PHONY: test-aarch64-py runtime-wheel
## test-aarch64-py: the wheel cross-built for aarch64, then act() and the bad-input and doctor tests
## under QEMU with Debian's arm64 python3.11 (scripts/aarch64/python.sh)
test-aarch64-py: $(TINY_BUNDLE)/model.onnx
	scripts/aarch64/python.sh $(TINY_BUNDLE) models/oat-metaworld-mt3

## runtime-wheel: the robot's install (numpy + onnxruntime, no torch) in build/runtime-venv, measured
runtime-wheel:
	scripts/runtime_wheel.sh models/oat-metaworld-mt3

.PHONY: asan-py soak
## asan-py: oat_edge.Policy from Python under ASan/UBSan (sanitized _core in build/asan-py), see scripts/asan_smoke.sh
asan-py: $(TINY_BUNDLE)/model.onnx
	JOBS=$(JOBS) PY=$(CURDIR)/$(PY) scripts/asan_smoke.sh $(TINY_BUNDLE)

## soak: 100000 act calls at batch 1, fails on > 1 MiB RSS growth (SOAK_ARGS="path/to/bundle -n 1000000")
SOAK_ARGS ?=
soak: $(TINY_BUNDLE)/model.onnx
	$(PY) scripts/soak.py $(if $(SOAK_ARGS),$(SOAK_ARGS),$(TINY_BUNDLE))

clean:
	rm -rf build dist
