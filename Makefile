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

.PHONY: setup build test test-cpp test-py demo bench asan clean

## setup: system tools, .venv, CPU torch, editable install + C++ build (idempotent)
setup:
	scripts/setup.sh

## build: incremental rebuild of the C++ core + _core after a C++ change (no dependency changes)
build:
	$(PY) -m pip install -q --no-build-isolation --no-deps $(CMAKE_DEFS) -e .

## test: setup (cheap when done) + C++ unit tests + pytest, fast
test: setup test-cpp test-py

# The C++ end-to-end test runs a tiny random-weight bundle, exported by the same code as pytest's.
TINY_BUNDLE := build/tiny_bundle
$(TINY_BUNDLE)/model.onnx: tests/conftest.py $(wildcard export/oat_export/*.py)
	rm -rf $(TINY_BUNDLE)
	$(PY) -W ignore -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.write_tiny_bundle('$(TINY_BUNDLE)')"

test-cpp: $(TINY_BUNDLE)/model.onnx
	@if [[ -f "$(BUILD_DIR)/CTestTestfile.cmake" ]]; then \
	  OAT_EDGE_TEST_BUNDLE="$(CURDIR)/$(TINY_BUNDLE)" ctest --test-dir "$(BUILD_DIR)" --output-on-failure -j $(JOBS); \
	else echo "test-cpp: no CTest tree in $(BUILD_DIR) (run make setup)" >&2; exit 1; fi

test-py:
	$(PY) -m pytest -q tests

## demo: the end-to-end job (train -> export -> run on Meta-World); see scripts/demo.sh
demo: setup
	scripts/demo.sh

## bench: latency of the C++ runtime vs the onnxruntime-Python loop vs PyTorch
bench: setup
	scripts/bench.sh

## asan: C++ core + unit tests under AddressSanitizer/UBSan in a separate tree
asan: $(TINY_BUNDLE)/model.onnx
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DOAT_EDGE_SANITIZE=ON -DOAT_EDGE_BUILD_TESTS=ON -DOAT_EDGE_BUILD_TOOLS=ON
	cmake --build $(ASAN_DIR) -j $(JOBS)
	OAT_EDGE_TEST_BUNDLE="$(CURDIR)/$(TINY_BUNDLE)" ctest --test-dir $(ASAN_DIR) --output-on-failure

clean:
	rm -rf build dist
