"""Environment faults: a broken ONNX Runtime library, an unavailable device, and bundle files that
change on disk under a loaded Policy.

tests/runtime/test_bad_inputs.py already covers: ORT library path missing, a text file as the
library, an ELF without OrtGetApiBase, no library anywhere, cuda without fallback. Here: a too-old
ORT (cpp/tests/fake_old_ort.c) and a truncated real ORT through Python, recovery after a failed
load, the CPU fallback actually producing CPU results, and live-file replacement.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from oat_edge import Policy, RuntimeLoadError
from oat_edge.ort_library import find_ort_library

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _obs(p, seed=0):
    i = p.info
    return np.random.default_rng(seed).normal(size=(3, i["n_obs_steps"], i["obs_dim"])).astype(np.float32)


def _outputs(p):
    """A fingerprint of a policy: sampled + greedy chunks at every k, and a detokenization."""
    i = p.info
    out = [p.act(_obs(p), seed=5, max_tokens=k) for k in range(1, i["num_tokens"] + 1)]
    out.append(p.act(_obs(p, 1), temperature=0.0))
    out.append(p.detokenize(np.arange(i["num_tokens"], dtype=np.int64) * 7))
    return out


# ---- ORT library faults (fresh interpreters: one ORT per process) -----------------------------------

_LOAD_BAD_THEN_GOOD = r"""
import sys
import numpy as np
from oat_edge import Policy, RuntimeLoadError
bundle, bad, good = sys.argv[1:4]
try:
    Policy(bundle, ort_library=bad)
except RuntimeLoadError as e:
    print("ERROR:", e)
else:
    sys.exit("no RuntimeLoadError for " + bad)
p = Policy(bundle, ort_library=good)  # a failed load must not poison the process
a = p.act(np.zeros((p.info["n_obs_steps"], p.info["obs_dim"]), np.float32), seed=1)
assert np.isfinite(a).all()
print("RECOVERED", p.info["ort_version"])
"""


@pytest.fixture(scope="module")
def real_ort():
    lib = find_ort_library()
    if not lib:
        pytest.skip("no onnxruntime wheel / OAT_EDGE_ORT_LIBRARY: nothing to compare against")
    return lib


@pytest.fixture(scope="module")
def fake_old_ort(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler to build cpp/tests/fake_old_ort.c")
    out = tmp_path_factory.mktemp("fake_ort") / "libonnxruntime.so.1.10.0"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), os.path.join(ROOT, "cpp", "tests", "fake_old_ort.c")],
                   check=True, capture_output=True, timeout=60)
    return str(out)


def _bad_then_good(bundle, bad, good, child_env):
    r = subprocess.run([sys.executable, "-c", _LOAD_BAD_THEN_GOOD, bundle, bad, good], capture_output=True,
                       text=True, env=child_env, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode} (negative = killed by a signal): {r.stdout}{r.stderr[-3000:]}"
    assert "RECOVERED" in r.stdout, r.stdout
    return r.stdout.split("RECOVERED")[0]


def test_too_old_ort_raises_runtime_load_error_naming_versions_then_real_ort_loads(
        tiny_bundle, fake_old_ort, real_ort, child_env):
    msg = _bad_then_good(tiny_bundle, fake_old_ort, real_ort, child_env)
    assert "ONNX Runtime 1.10.0 found at" in msg and "needs >= 1.21" in msg, msg
    assert "onnxruntime>=1.21" in msg, msg  # says how to fix it


@pytest.mark.parametrize("keep", [32, 64 * 1024, "all_but_1"])
def test_truncated_ort_library_raises_runtime_load_error_then_real_ort_loads(
        tiny_bundle, real_ort, tmp_path, child_env, keep):
    # A real ELF cut short (an interrupted copy/download). dlopen maps such a file past its end and
    # dies of SIGBUS; the loader must check the ELF headers against the file size first.
    size = os.path.getsize(real_ort)
    n = {"half": size // 2, "all_but_1": size - 1}.get(keep, keep)
    cut = tmp_path / os.path.basename(real_ort)
    with open(real_ort, "rb") as f:
        cut.write_bytes(f.read(n))
    msg = _bad_then_good(tiny_bundle, str(cut), real_ort, child_env)
    assert str(cut) in msg and "tried:" in msg, msg
    assert "truncated ELF file" in msg and "reinstall onnxruntime" in msg, msg


def test_second_different_ort_library_in_one_process_raises_runtime_load_error(tiny_bundle, fake_old_ort):
    Policy(tiny_bundle)  # this process's ORT is loaded now
    with pytest.raises(RuntimeLoadError, match="already loaded in this process"):
        Policy(tiny_bundle, ort_library=fake_old_ort)


# ---- devices ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_unavailable_device_falls_back_to_cpu_with_identical_outputs(tiny_bundle, device):
    fb = Policy(tiny_bundle, device=device, allow_cpu_fallback=True)
    if fb.info["provider"] != "CPUExecutionProvider":
        pytest.skip(f"this ONNX Runtime has a working {device} provider")
    cpu = Policy(tiny_bundle)
    for a, b in zip(_outputs(fb), _outputs(cpu)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_unavailable_device_without_fallback_raises_runtime_load_error_listing_providers(tiny_bundle, device):
    if Policy(tiny_bundle, device=device, allow_cpu_fallback=True).info["provider"] != "CPUExecutionProvider":
        pytest.skip(f"this ONNX Runtime has a working {device} provider")
    with pytest.raises(RuntimeLoadError) as e:
        Policy(tiny_bundle, device=device)
    msg = str(e.value)
    assert f"device '{device}' unavailable" in msg and "Available providers" in msg, msg
    assert "CPUExecutionProvider" in msg and "allow_cpu_fallback" in msg, msg


# ---- bundle files changing under a loaded policy -----------------------------------------------------



@pytest.mark.parametrize("fault", ["delete_all_files", "truncate_graphs", "replace_with_other_weights",
                                   "delete_directory"])
def test_loaded_policy_keeps_its_outputs_when_bundle_files_change_on_disk(tiny_bundle, tmp_path, fault):
    live = tmp_path / "live"
    shutil.copytree(tiny_bundle, live)
    p = Policy(live)
    before = _outputs(p)
    graphs = [f for f in os.listdir(live) if f.endswith(".onnx")]
    if fault == "delete_all_files":
        for f in os.listdir(live):
            os.remove(live / f)
    elif fault == "truncate_graphs":
        for f in graphs:
            with open(live / f, "r+b") as fh:  # in place: same inode, as a crashed rsync would leave it
                fh.truncate(100)
    elif fault == "replace_with_other_weights":
        # Swap each graph for a different, valid graph with other weights (the step graph's weights
        # scaled): a reload would differ, the loaded policy must not.
        onnx = pytest.importorskip("onnx")
        from onnx import numpy_helper

        for f in graphs:
            m = onnx.load(str(live / f))
            for init in m.graph.initializer:
                arr = numpy_helper.to_array(init)
                if arr.dtype == np.float32 and arr.size > 1:
                    init.CopyFrom(numpy_helper.from_array(arr * np.float32(-1.5), init.name))
            onnx.save(m, str(live / f))
        changed = Policy(live)
        assert any(not np.array_equal(a, b) for a, b in zip(_outputs(changed), before)), "replacement had no effect"
    else:
        shutil.rmtree(live)
    after = _outputs(p)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
