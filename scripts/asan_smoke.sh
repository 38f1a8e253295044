#!/usr/bin/env bash
# Python smoke run of oat_edge.Policy under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/asan_smoke.sh [bundle]        (make asan-py; default bundle: build/tiny_bundle)
#
# Builds oat_edge._core with -DOAT_EDGE_SANITIZE=ON into build/asan-py (separate from the normal
# build; the installed _core is untouched), then runs a Python smoke with that _core injected:
# a few hundred act/generate/detokenize/tokenize calls over every prefix length and several batch
# sizes, bad inputs through Policy *and* straight into _core (the C++ re-checks), an observation
# that overflows inside the graph (the KV-cache reset path), corrupt-bundle loads, and 4 threads on
# one Policy. python itself is not instrumented, so libasan is LD_PRELOADed; detect_leaks=0 because
# CPython leaks by design at exit (the C++ unit tests run with leak detection: make asan).
# Any ASan/UBSan report aborts the run with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
BUILD=${ASAN_PY_DIR:-build/asan-py}
BUNDLE=${1:-build/tiny_bundle}
JOBS=${JOBS:-2}
export PATH="$ROOT/.venv/bin:$PATH"  # cmake/ninja from the venv when the system has none

if [[ ! -f "$BUNDLE/model.onnx" && ! -f "$BUNDLE" ]]; then
  echo "asan_smoke: no bundle at $BUNDLE (make build/tiny_bundle/model.onnx, or pass one)" >&2
  exit 2
fi
CC_BIN=${CC:-gcc}
LIBASAN=$("$CC_BIN" -print-file-name=libasan.so)
[[ -f "$LIBASAN" ]] || { echo "asan_smoke: $CC_BIN has no libasan.so ($LIBASAN)" >&2; exit 2; }
# libstdc++ preloaded too: python is not linked with it, and ASan's __cxa_throw interceptor must find
# the real one at start-up (else the first C++ exception dies in "CHECK failed: real___cxa_throw").
LIBSTDCXX=$("${CXX:-g++}" -print-file-name=libstdc++.so)

gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CC_BIN" \
  -DOAT_EDGE_SANITIZE=ON -DOAT_EDGE_BUILD_PYTHON=ON -DOAT_EDGE_BUILD_TESTS=OFF \
  -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target _core
CORE=$(ls "$BUILD"/_core*.so | head -1)
echo "asan_smoke: sanitized core $CORE"

# halt_on_error: the first report is fatal; UBSan is built with -fno-sanitize-recover (aborts too).
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
LD_PRELOAD="$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}" "$PY" - "$CORE" "$BUNDLE" <<'PYEOF'
import importlib.util, json, os, shutil, sys, tempfile, threading
import numpy as np

core_path, bundle = sys.argv[1], sys.argv[2]
import oat_edge
spec = importlib.util.spec_from_file_location("oat_edge._core", core_path)
core = importlib.util.module_from_spec(spec)
sys.modules["oat_edge._core"] = core
spec.loader.exec_module(core)
oat_edge._core = core  # Policy() imports `from oat_edge import _core`: this one
from oat_edge import BundleError, InputError, Policy, RuntimeLoadError

p = Policy(bundle)
assert type(p._core) is core.Policy, "the sanitized _core was not the one used"
i = p.info
K, cb, S, D = i["num_tokens"], i["codebook_size"], i["n_obs_steps"], i["obs_dim"]
lo = np.asarray(i["manifest"]["normalization"]["action_low"], np.float32)
hi = np.asarray(i["manifest"]["normalization"]["action_high"], np.float32)
rng = np.random.default_rng(0)
calls = 0

def ok(a):
    assert np.isfinite(a).all() and (a >= lo).all() and (a <= hi).all(), a

# 1. act / generate / detokenize / tokenize over k, batch sizes (1, 3, 8: the workspace grows), options
for n in range(300):
    B = (1, 3, 1, 8)[n % 4]
    obs = rng.normal(scale=(1.0, 1e3, 1e6)[n % 3], size=(B, S, D)).astype(np.float32)
    k = n % K + 1
    ok(p.act(obs, max_tokens=k, seed=n, temperature=(None, 0.0, 2.0)[n % 3], top_k=(None, 0, 1, cb)[n % 4]))
    ids = p.generate(obs, max_tokens=k, seed=n)
    ok(p.detokenize(ids[:, :k]))
    ok(p.detokenize(rng.integers(0, cb, size=(B, K)), k=k))
    calls += 4
    if n % 50 == 0 and "encoder" in i["manifest"]["files"]:
        assert p.tokenize(p.act(obs, seed=n)).shape == (B, K)
        calls += 2
ok(p.act(np.zeros((S, D), np.float32), latency_budget_ms=1e-3, min_tokens=1))

# 2. bad inputs: through Policy, and straight into _core (what the C++ layer re-checks)
bad = 0
def expect(exc, f, *a, **kw):
    global bad
    try:
        f(*a, **kw)
    except exc:
        bad += 1
        return
    raise AssertionError(f"no {exc.__name__}: {f} {a} {kw}")
expect(InputError, p.act, np.full((S, D), np.nan, np.float32))
expect(InputError, p.act, np.zeros((S + 1, D), np.float32))
expect(InputError, p.detokenize, np.array([cb]))
expect(InputError, p.detokenize, np.array([-1]))
expect(InputError, p.detokenize, np.zeros(K + 1, np.int64))
c = p._core
expect(InputError, c.act, np.zeros((1, S, D)))                                   # float64
expect(InputError, c.act, np.zeros((1, S, 2 * D), np.float32)[:, :, ::2])        # strided
expect(InputError, c.act, np.zeros((1, D, S), np.float32))                       # transposed
expect(InputError, c.act, np.zeros((0, S, D), np.float32))                       # empty
expect(InputError, c.act, np.full((1, S, D), np.inf, np.float32))                # inf past Python
expect(InputError, c.act, np.zeros((1, S, D), np.float32), max_tokens=K + 1)
expect(InputError, c.act, np.zeros((1, S, D), np.float32), temperature=float("nan"))
expect(InputError, c.act, np.zeros((1, S, D), np.float32), top_k=cb + 1)
expect(InputError, c.detokenize, np.full((1, K), cb, np.int64))                  # id out of range
expect(InputError, c.detokenize, np.full((1, K), -5, np.int64))
expect(InputError, c.detokenize, np.zeros((1, K + 1), np.int64))                 # k > K
expect(InputError, c.detokenize, np.zeros((1, 2), np.int32))
expect(InputError, c.tokenize, np.zeros((1, 2, 2), np.float32))

# 3. an observation that overflows inside the graph, then the policy must work again
try:
    p.act(np.full((S, D), 3e38, np.float32), seed=1)
except (BundleError, InputError):
    bad += 1
ok(p.act(np.zeros((S, D), np.float32), seed=1))

# 4. corrupt bundles: every load fails with BundleError, sanitizers silent
tmp = tempfile.mkdtemp()
def copy(name):
    d = os.path.join(tmp, name); shutil.copytree(bundle if os.path.isdir(bundle) else os.path.dirname(bundle), d); return d
d = copy("trunc"); m = os.path.join(d, "model.onnx"); data = open(m, "rb").read(); open(m, "wb").write(data[: len(data) // 2])
expect(BundleError, Policy, d)
d = copy("flip"); m = os.path.join(d, "decoder.onnx"); data = bytearray(open(m, "rb").read())
for pos in rng.integers(0, len(data), 64): data[pos] ^= 0xFF
open(m, "wb").write(bytes(data))
try:
    q = Policy(d); q.act(np.zeros((S, D), np.float32))
except BundleError:
    bad += 1
d = copy("nodec"); os.remove(os.path.join(d, "decoder.onnx")); expect(BundleError, Policy, d)
expect(BundleError, Policy, os.path.join(copy("entry"), "decoder.onnx"))
expect(RuntimeLoadError, Policy, bundle, device="cuda") if Policy(bundle, device="cuda", allow_cpu_fallback=True).info["provider"] == "CPUExecutionProvider" else None
shutil.rmtree(tmp)

# 5. four threads on one Policy
ref = {s: p.act(np.full((S, D), s / 10, np.float32), seed=s) for s in range(40)}
got = {}
def work(seeds):
    for s in seeds:
        got[s] = p.act(np.full((S, D), s / 10, np.float32), seed=s)
ts = [threading.Thread(target=work, args=(range(t, 40, 4),)) for t in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
assert all(np.array_equal(got[s], ref[s]) for s in ref)
calls += 80
print(f"ASAN SMOKE OK: {calls} inference calls, {bad} bad inputs/bundles rejected, threads ok")
PYEOF
