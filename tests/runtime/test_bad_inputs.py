"""Bad input -> the right oat_edge exception with a message naming what was expected and what was
given; never a crash, never silent garbage."""
import json
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


# (id, obs builder, act kwargs, exception, substrings the message must contain)
ACT_CASES = [
    ("obs_too_many_steps", lambda c: np.zeros((c["n_obs_steps"] + 1, c["obs_dim"]), np.float32), {},
     InputError, ["expected shape", "[n_obs_steps, obs_dim] = [2, 5]", "(3, 5)"]),
    ("obs_wrong_feature_dim", lambda c: np.zeros((1, c["n_obs_steps"], c["obs_dim"] + 2), np.float32), {},
     InputError, ["expected shape", "(1, 2, 7)"]),
    ("obs_1d", lambda c: np.zeros(c["obs_dim"], np.float32), {}, InputError, ["expected shape", "(5,)"]),
    ("obs_4d", lambda c: np.zeros((1, 1, c["n_obs_steps"], c["obs_dim"]), np.float32), {},
     InputError, ["expected shape", "(1, 1, 2, 5)"]),
    ("empty_batch", lambda c: np.zeros((0, c["n_obs_steps"], c["obs_dim"]), np.float32), {},
     InputError, ["empty batch", "(0, 2, 5)"]),
    ("int_dtype", lambda c: np.zeros((c["n_obs_steps"], c["obs_dim"]), np.int64), {},
     InputError, ["float32 or float64", "int64"]),
    ("bool_dtype", lambda c: np.zeros((c["n_obs_steps"], c["obs_dim"]), bool), {},
     InputError, ["float32 or float64", "bool"]),
    ("complex_dtype", lambda c: np.zeros((c["n_obs_steps"], c["obs_dim"]), np.complex64), {},
     InputError, ["float32 or float64", "complex64"]),
    ("float16_dtype", lambda c: np.zeros((c["n_obs_steps"], c["obs_dim"]), np.float16), {},
     InputError, ["float32 or float64", "float16"]),
    ("object_dtype", lambda c: np.full((c["n_obs_steps"], c["obs_dim"]), None), {},
     InputError, ["float32 or float64", "object"]),
    ("ragged_list", lambda c: [[0.0] * c["obs_dim"], [0.0]], {}, InputError, ["rectangular"]),
    ("nan", lambda c: _with(c, (1, 0, 3), np.nan), {}, InputError, ["finite", "nan", "(1, 0, 3)"]),
    ("inf", lambda c: _with(c, (0, 1, 2), -np.inf), {}, InputError, ["finite", "-inf", "(0, 1, 2)"]),
    ("float64_overflows_float32", lambda c: _with(c, (1, 1, 4), 1e300, np.float64), {},
     InputError, ["too large for float32", "1e+300", "(1, 1, 4)"]),
    ("k_zero", _good, {"max_tokens": 0}, InputError, ["max_tokens", "1..4", "got 0"]),
    ("k_above_K", _good, {"max_tokens": 5}, InputError, ["max_tokens", "1..4", "got 5"]),
    ("k_float", _good, {"max_tokens": 2.0}, InputError, ["max_tokens", "expected an int", "float"]),
    ("k_bool", _good, {"max_tokens": True}, InputError, ["max_tokens", "bool"]),
    ("negative_temperature", _good, {"temperature": -0.5}, InputError, ["temperature", ">= 0", "-0.5"]),
    ("nan_temperature", _good, {"temperature": float("nan")}, InputError, ["temperature", "finite", "nan"]),
    ("top_k_above_codebook", _good, {"top_k": 1001}, InputError, ["top_k", "0..1000", "1001"]),
    ("negative_top_k", _good, {"top_k": -1}, InputError, ["top_k", "0..1000", "-1"]),
    ("negative_seed", _good, {"seed": -3}, InputError, ["seed", "2**64", "-3"]),
    ("seed_too_big", _good, {"seed": 2**64}, InputError, ["seed", str(2**64)]),
    ("zero_latency_budget", _good, {"latency_budget_ms": 0}, InputError, ["latency_budget_ms", "> 0"]),
    ("min_tokens_above_max", _good, {"max_tokens": 2, "min_tokens": 3}, InputError, ["min_tokens", "<= max_tokens = 2", "3"]),
]


@pytest.mark.parametrize("make_obs, kwargs, exc, parts", [c[1:] for c in ACT_CASES], ids=[c[0] for c in ACT_CASES])
def test_bad_act_argument_raises_named_error(policy, tiny_config, make_obs, kwargs, exc, parts):
    assert tiny_config["num_tokens"] == 4 and tiny_config["obs_dim"] == 5  # the messages above assume it
    with pytest.raises(exc) as e:
        policy.act(make_obs(tiny_config), **kwargs)
    for part in parts:
        assert part in str(e.value), f"{part!r} missing from: {e.value}"


def test_input_errors_are_value_errors_and_load_errors_are_runtime_errors():
    assert issubclass(InputError, ValueError)
    assert issubclass(BundleError, RuntimeError) and issubclass(RuntimeLoadError, RuntimeError)


def test_generate_checks_like_act(policy, tiny_config):
    with pytest.raises(InputError, match="max_tokens"):
        policy.generate(_good(tiny_config), max_tokens=9)


DETOK_CASES = [
    ("id_above_codebook", np.array([3, 1000]), {}, ["[0, 1000)", "1000", "(1,)"]),
    ("negative_id", np.array([[3, 4], [5, -1]]), {}, ["[0, 1000)", "-1", "(1, 1)"]),
    ("float_ids", np.array([1.0, 2.0]), {}, ["integer", "float64"]),
    ("too_many_ids", np.zeros(5, np.int64), {}, ["1..4", "got 5"]),
    ("k_larger_than_given", np.zeros(2, np.int64), {"k": 3}, ["<= ids.shape[-1] = 2", "got 3"]),
    ("k_zero", np.zeros(2, np.int64), {"k": 0}, ["1..4", "got 0"]),
    ("3d_ids", np.zeros((1, 1, 2), np.int64), {}, ["[k] or [B, k]", "(1, 1, 2)"]),
    ("empty_batch", np.zeros((0, 2), np.int64), {}, ["empty batch"]),
]


@pytest.mark.parametrize("ids, kwargs, parts", [c[1:] for c in DETOK_CASES], ids=[c[0] for c in DETOK_CASES])
def test_bad_detokenize_argument_raises_input_error(policy, ids, kwargs, parts):
    with pytest.raises(InputError) as e:
        policy.detokenize(ids, **kwargs)
    for part in parts:
        assert part in str(e.value), f"{part!r} missing from: {e.value}"


def test_tokenize_rejects_wrong_chunk_shape(policy, tiny_config):
    with pytest.raises(InputError, match=r"\[H_a, D_a\] = \[8, 3\].*\(3, 8\)"):
        policy.tokenize(np.zeros((tiny_config["action_dim"], tiny_config["horizon"]), np.float32))


def test_core_refuses_arrays_it_would_have_to_cast(policy, tiny_config):
    # The private backend must never reinterpret float64 / strided memory as float32.
    core = policy._core
    obs = np.zeros((1, tiny_config["n_obs_steps"], tiny_config["obs_dim"]))
    with pytest.raises(InputError, match="expected dtype float32, got float64"):
        core.act(obs)
    with pytest.raises(InputError, match="C-contiguous"):
        core.act(np.zeros((1, tiny_config["n_obs_steps"], 2 * tiny_config["obs_dim"]), np.float32)[:, :, ::2])
    with pytest.raises(InputError, match=r"expected shape \[B, 2, 5\], got \(1, 5, 2\)"):
        core.act(np.zeros((1, tiny_config["obs_dim"], tiny_config["n_obs_steps"]), np.float32))
    with pytest.raises(InputError, match="expected dtype int64, got int32"):
        core.detokenize(np.zeros((1, 2), np.int32))


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


def test_other_format_version_raises_bundle_error_naming_both_versions(bundle_copy):
    onnx = pytest.importorskip("onnx")
    from oat_edge.manifest import MANIFEST_KEY

    path = str(bundle_copy / "model.onnx")
    m = onnx.load(path)
    (prop,) = [p for p in m.metadata_props if p.key == MANIFEST_KEY]
    manifest = json.loads(prop.value)
    manifest["format_version"] = 2
    prop.value = json.dumps(manifest)
    onnx.save(m, path)
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


def test_unknown_device_raises_input_error(tiny_bundle):
    with pytest.raises(InputError, match=r"device: expected one of .*'cpu'.*got 'gpu'"):
        Policy(tiny_bundle, device="gpu")


def test_zero_max_batch_raises_input_error(tiny_bundle):
    with pytest.raises(InputError, match="max_batch: expected >= 1, got 0"):
        Policy(tiny_bundle, max_batch=0)


@pytest.mark.parametrize("flag", ["allow_cpu_fallback", "spin_wait", "trt_fp16", "warmup"])
@pytest.mark.parametrize("value", ["no", 0, None])
def test_non_bool_flag_raises_input_error_instead_of_reading_as_truthy(tiny_bundle, flag, value):
    with pytest.raises(InputError, match=rf"{flag}: expected True or False, got {type(value).__name__}"):
        Policy(tiny_bundle, **{flag: value})


def test_unavailable_device_without_fallback_raises_runtime_load_error(tiny_bundle):
    if Policy(tiny_bundle, device="cuda", allow_cpu_fallback=True).info["provider"] != "CPUExecutionProvider":
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
