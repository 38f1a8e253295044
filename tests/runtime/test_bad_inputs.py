"""Bad input -> the right oat_edge exception with a message naming what was expected and what was
given; never a crash, never silent garbage."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from oat_edge import BundleError, InputError, Policy, RuntimeLoadError


@pytest.fixture(scope="module")
def policy(tiny_bundle):
    return Policy(tiny_bundle)


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dst)
    return dst


def _good(cfg, batch=None):
    shape = (cfg["n_obs_steps"], cfg["obs_dim"]) if batch is None else (batch, cfg["n_obs_steps"], cfg["obs_dim"])
    return np.zeros(shape, np.float32)


def _with(cfg, index, value, dtype=np.float32):
    obs = _good(cfg, batch=2).astype(dtype)
    obs[index] = value
    return obs


# The argument rules themselves (shapes, dtypes, NaN, option ranges) are one table run against
# both APIs: tests/data/argument_rules.json, tests/runtime/test_argument_rules.py. What is left
# here is what only the Python layer does: converting array-likes and unbatched inputs.
CONVERSION_CASES = [
    ("unbatched_wrong_steps", lambda c: np.zeros((c["n_obs_steps"] + 1, c["obs_dim"]), np.float32),
     ["obs: expected float32 [B, 2, 5]", "[1, 3, 5]"]),
    ("ragged_list", lambda c: [[0.0] * c["obs_dim"], [0.0]], ["obs: expected a rectangular numeric array"]),
    ("object_dtype", lambda c: np.full((c["n_obs_steps"], c["obs_dim"]), None), ["got an unsupported element type"]),
    ("complex_dtype", lambda c: np.zeros((c["n_obs_steps"], c["obs_dim"]), np.complex64),
     ["got an unsupported element type"]),
    ("float64_overflows_float32", lambda c: _with(c, (1, 1, 4), 1e300, np.float64),
     ["too large for float32", "1e+300", "(1, 1, 4)"]),
    ("float64_nan", lambda c: _with(c, (1, 0, 3), np.nan, np.float64), ["obs[1][0][3]", "NaN"]),
]


@pytest.mark.parametrize("make_obs, parts", [c[1:] for c in CONVERSION_CASES], ids=[c[0] for c in CONVERSION_CASES])
def test_array_conversion_failure_raises_named_input_error(policy, tiny_config, make_obs, parts):
    assert tiny_config["num_tokens"] == 4 and tiny_config["obs_dim"] == 5  # the messages above assume it
    with pytest.raises(InputError) as e:
        policy.act(make_obs(tiny_config))
    for part in parts:
        assert part in str(e.value), f"{part!r} missing from: {e.value}"


def test_float64_and_float16_observations_are_converted_not_refused(policy, tiny_config):
    obs = _good(tiny_config)
    ref = policy.act(obs, seed=1)
    assert np.array_equal(policy.act(obs.astype(np.float64), seed=1), ref)
    assert np.array_equal(policy.act(obs.astype(np.float16), seed=1), ref)


def test_input_errors_are_value_errors_and_load_errors_are_runtime_errors():
    assert issubclass(InputError, ValueError)
    assert issubclass(BundleError, RuntimeError) and issubclass(RuntimeLoadError, RuntimeError)


@pytest.mark.parametrize("ids, k, parts", [
    (np.zeros(2, np.int64), 3, ["k: expected 1..ids.shape[-1] = 1..2", "got 3"]),
    (np.zeros(2, np.int64), 0, ["k: expected 1..ids.shape[-1] = 1..2", "got 0"]),
    (np.zeros(2, np.int64), 1.0, ["k: expected an int", "float"]),
])
def test_detokenize_prefix_argument_k_is_checked_against_the_ids_given(policy, ids, k, parts):
    with pytest.raises(InputError) as e:
        policy.detokenize(ids, k=k)
    for part in parts:
        assert part in str(e.value), f"{part!r} missing from: {e.value}"


def test_unbatched_ids_and_int32_ids_decode_like_their_int64_batch(policy):
    ids = np.array([[3, 7, 1]], np.int64)
    ref = policy.detokenize(ids)
    assert np.array_equal(policy.detokenize(ids[0].astype(np.int32)), ref[0])
    assert np.array_equal(policy.detokenize(np.array([[3, 7, 1, 9]]), k=3), ref)


def test_core_refuses_arrays_it_would_have_to_reinterpret(policy, tiny_config):
    # The private backend reads memory as is: a strided view or a non-array is refused, never copied.
    core = policy._core
    with pytest.raises(InputError, match="C-contiguous"):
        core.act(np.zeros((1, tiny_config["n_obs_steps"], 2 * tiny_config["obs_dim"]), np.float32)[:, :, ::2])
    with pytest.raises(InputError, match="obs: expected a numpy array, got list"):
        core.act([[0.0] * tiny_config["obs_dim"]] * tiny_config["n_obs_steps"])
    with pytest.raises(InputError, match="obs: expected float32 .*, got float64"):
        core.act(np.zeros((1, tiny_config["n_obs_steps"], tiny_config["obs_dim"])))
    swapped = np.zeros((1, tiny_config["n_obs_steps"], tiny_config["obs_dim"]), np.dtype(">f4"))
    with pytest.raises(InputError, match="unsupported element type"):
        core.act(swapped)


def test_batch_above_the_configured_limit_is_refused_before_allocating(tiny_bundle, tiny_config):
    p = Policy(tiny_bundle, batch_limit=2, warmup=False)
    assert p.info.batch_limit == 2
    obs = np.zeros((3, tiny_config["n_obs_steps"], tiny_config["obs_dim"]), np.float32)
    with pytest.raises(InputError, match="obs: batch 3 is over this policy's batch_limit of 2"):
        p.act(obs)
    assert p.act(obs[:2]).shape == (2, tiny_config["horizon"], tiny_config["action_dim"])


# ---- broken bundles and libraries --------------------------------------------------------------

def test_missing_bundle_path_raises_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="does not exist") as e:
        Policy(tmp_path / "nowhere")
    assert "nowhere" in str(e.value)


def test_missing_sibling_graph_raises_bundle_error_naming_it(bundle_copy):
    os.remove(bundle_copy / "decoder.onnx")
    with pytest.raises(BundleError, match="decoder.onnx"):
        Policy(bundle_copy)


def test_truncated_entry_graph_raises_bundle_error(bundle_copy):
    model = bundle_copy / "model.onnx"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError, match="model.onnx"):
        Policy(bundle_copy)


def test_directory_without_model_onnx_raises_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="model.onnx"):
        Policy(tmp_path)


def test_other_format_version_raises_bundle_error_naming_both_versions(bundle_copy, edit_manifest):
    edit_manifest(bundle_copy, lambda d: d.update(format_version=2))
    with pytest.raises(BundleError) as e:
        Policy(bundle_copy)
    msg = str(e.value)
    assert "format_version" in msg and "2" in msg and "1" in msg, msg


def test_nonexistent_ort_library_raises_runtime_load_error(tiny_bundle, tmp_path):
    missing = tmp_path / "libonnxruntime.so.1.99.0"
    with pytest.raises(RuntimeLoadError, match="does not exist") as e:
        Policy(tiny_bundle, ort_library=missing)
    assert str(missing) in str(e.value)


_LOAD_IN_FRESH_PROCESS = """
import sys
from oat_edge import Policy, RuntimeLoadError
try:
    Policy(sys.argv[1], ort_library=sys.argv[2])
except RuntimeLoadError as e:
    print(e)
    sys.exit(0)
sys.exit("no RuntimeLoadError")
"""


@pytest.mark.parametrize("kind", ["not_elf", "elf_without_ort_symbols"])
def test_ort_library_that_is_not_onnxruntime_raises_runtime_load_error(tiny_bundle, tmp_path, kind, child_env):
    # A fresh interpreter: this one already holds an ORT (one per process), and a crash in the
    # loader's failure path must show up as a failed test, not a dead test run.
    if kind == "not_elf":
        lib = tmp_path / "libonnxruntime.so.1.31.1"
        lib.write_text("not an ELF file\n")
    else:
        import oat_edge._core

        lib = oat_edge._core.__file__  # a real shared object, but no OrtGetApiBase
    r = subprocess.run([sys.executable, "-c", _LOAD_IN_FRESH_PROCESS, tiny_bundle, str(lib)],
                       capture_output=True, text=True, env=child_env, timeout=60)
    assert r.returncode == 0, f"exit {r.returncode} (negative = killed by a signal): {r.stdout}{r.stderr}"
    assert str(lib) in r.stdout, r.stdout


@pytest.mark.parametrize("flag", ["allow_cpu_fallback", "spin_wait", "trt_fp16", "warmup"])
@pytest.mark.parametrize("value", ["no", 0, 1.0])
def test_non_bool_flag_raises_input_error_instead_of_reading_as_truthy(tiny_bundle, flag, value):
    with pytest.raises(InputError, match=rf"{flag}: expected True or False, got {type(value).__name__}"):
        Policy(tiny_bundle, **{flag: value})


def test_unavailable_device_without_fallback_raises_runtime_load_error(tiny_bundle):
    if Policy(tiny_bundle, device="cuda", allow_cpu_fallback=True).info.provider != "CPUExecutionProvider":
        pytest.skip("this ONNX Runtime has a working CUDA provider")
    with pytest.raises(RuntimeLoadError, match="cuda") as e:
        Policy(tiny_bundle, device="cuda")
    assert "allow_cpu_fallback" in str(e.value)


_NO_LIBRARY_ANYWHERE = """
import sys
import oat_edge.policy
from oat_edge import Policy, RuntimeLoadError
oat_edge.policy.find_ort_library = lambda explicit=None: ""  # as if no wheel and no env var
try:
    Policy(sys.argv[1])
except RuntimeLoadError as e:
    print(e)
    sys.exit(0)
sys.exit("no RuntimeLoadError")
"""


def test_no_ort_library_anywhere_raises_runtime_load_error_saying_how_to_install(tiny_bundle, child_env):
    import ctypes.util

    if ctypes.util.find_library("onnxruntime"):
        pytest.skip("this machine has a system-wide ONNX Runtime")
    env = {k: v for k, v in child_env.items() if k != "OAT_EDGE_ORT_LIBRARY"}
    r = subprocess.run([sys.executable, "-c", _NO_LIBRARY_ANYWHERE, tiny_bundle],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, f"exit {r.returncode} (negative = killed by a signal): {r.stdout}{r.stderr}"
    assert "pip install onnxruntime" in r.stdout and "OAT_EDGE_ORT_LIBRARY" in r.stdout, r.stdout
