"""oat_edge.Policy on a tiny exported bundle: shapes, bounds, sampling, parity with the
onnxruntime-Python reference loop, stats, and the GIL being released during inference."""
import dataclasses
import os
import subprocess
import sys
import threading
import time

import numpy as np
import oat_edge
import pytest
from oat_edge import Policy


@pytest.fixture(scope="module")
def policy(tiny_bundle):
    return Policy(tiny_bundle)


@pytest.fixture(scope="module")
def reference(tiny_bundle):
    pytest.importorskip("onnxruntime")
    from oat_edge.ort_reference import OrtBundle

    return OrtBundle(tiny_bundle)


def _obs(cfg, batch=None, seed=0):
    shape = (cfg["n_obs_steps"], cfg["obs_dim"]) if batch is None else (batch, cfg["n_obs_steps"], cfg["obs_dim"])
    return np.random.default_rng(seed).normal(0.0, 2.0, size=shape).astype(np.float32)


def _bounds(policy):
    n = policy.info.normalization
    return n.action_low, n.action_high


def test_single_obs_gives_one_float32_chunk(policy, tiny_config):
    out = policy.act(_obs(tiny_config))
    assert out.shape == (tiny_config["horizon"], tiny_config["action_dim"])
    assert out.dtype == np.float32 and out.flags.c_contiguous


def test_batched_obs_gives_one_chunk_per_row(policy, tiny_config):
    out = policy.act(_obs(tiny_config, batch=3))
    assert out.shape == (3, tiny_config["horizon"], tiny_config["action_dim"])


def test_batch_larger_than_max_batch_still_works(tiny_bundle, tiny_config):
    p = Policy(tiny_bundle, max_batch=1)
    obs = _obs(tiny_config, batch=5, seed=3)
    batched = p.act(obs, temperature=0)
    rows = np.stack([p.act(o, temperature=0) for o in obs])
    np.testing.assert_allclose(batched, rows, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_every_prefix_length_gives_finite_actions_within_bounds(policy, tiny_config, k):
    assert k <= tiny_config["num_tokens"]
    low, high = _bounds(policy)
    out = policy.act(_obs(tiny_config, batch=4, seed=k), max_tokens=k, seed=k)
    assert np.isfinite(out).all()
    assert (out >= low - 1e-5).all() and (out <= high + 1e-5).all()
    assert policy.last_stats["tokens_used"] == k


def test_prefix_length_changes_the_chunk(policy, tiny_config):
    obs = _obs(tiny_config, seed=11)
    chunks = [policy.act(obs, max_tokens=k, temperature=0) for k in range(1, tiny_config["num_tokens"] + 1)]
    assert any(not np.allclose(chunks[0], c) for c in chunks[1:])


def test_same_seed_reproduces_tokens_and_other_seeds_differ(policy, tiny_config):
    obs = _obs(tiny_config, batch=2, seed=5)
    a = policy.generate(obs, temperature=1.0, top_k=0, seed=1234)
    b = policy.generate(obs, temperature=1.0, top_k=0, seed=1234)
    np.testing.assert_array_equal(a, b)
    others = [policy.generate(obs, temperature=1.0, top_k=0, seed=s) for s in range(5)]
    assert any(not np.array_equal(a, o) for o in others)


def test_greedy_tokens_and_actions_match_onnxruntime_python_loop(policy, reference, tiny_config):
    obs = _obs(tiny_config, batch=4, seed=21)
    ids = policy.generate(obs, temperature=0)
    ref_ids = reference.generate(obs, temperature=0.0, top_k=0)
    np.testing.assert_array_equal(ids, ref_ids)
    for k in (1, tiny_config["num_tokens"]):
        np.testing.assert_allclose(policy.act(obs, max_tokens=k, temperature=0),
                                   reference.act(obs, max_tokens=k, temperature=0.0, top_k=0),
                                   rtol=1e-4, atol=1e-4)


def test_seeded_sampling_matches_python_reference_sampler(policy, reference, tiny_config):
    obs = _obs(tiny_config, batch=3, seed=8)
    for seed in (0, 7, 2**63 + 5):
        ids = policy.generate(obs, temperature=1.0, top_k=10, seed=seed)
        np.testing.assert_array_equal(ids, reference.generate(obs, temperature=1.0, top_k=10, seed=seed))


def test_act_equals_detokenize_of_generated_prefix(policy, tiny_config):
    obs = _obs(tiny_config, seed=2)
    ids = policy.generate(obs, max_tokens=2, temperature=0)
    assert (ids[2:] == -1).all(), "entries past tokens_used must be -1"
    np.testing.assert_allclose(policy.detokenize(ids, k=2), policy.act(obs, max_tokens=2, temperature=0),
                               rtol=1e-5, atol=1e-6)


def test_float64_and_strided_obs_give_the_float32_result(policy, tiny_config):
    obs = _obs(tiny_config, batch=2, seed=4)
    expected = policy.act(obs, temperature=0)
    np.testing.assert_allclose(policy.act(obs.astype(np.float64), temperature=0), expected, rtol=1e-6)
    strided = np.asfortranarray(obs)
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(policy.act(strided, temperature=0), expected, rtol=1e-6)
    as_list = obs.tolist()
    np.testing.assert_allclose(policy.act(as_list, temperature=0), expected, rtol=1e-6)


def test_tokenize_returns_k_valid_ids_per_chunk(policy, tiny_config):
    chunks = policy.act(_obs(tiny_config, batch=2, seed=9))
    ids = policy.tokenize(chunks)
    assert ids.shape == (2, tiny_config["num_tokens"]) and ids.dtype == np.int64
    assert ((ids >= 0) & (ids < policy.info["codebook_size"])).all()
    np.testing.assert_array_equal(policy.tokenize(chunks[1]), ids[1])


def test_info_reports_bundle_shapes_provider_and_ort(policy, tiny_config, tiny_bundle):
    i = policy.info
    for key in ("num_tokens", "horizon", "action_dim", "obs_dim", "n_obs_steps", "n_layers", "n_heads"):
        assert getattr(i, key) == tiny_config[key], key
        assert i[key] == tiny_config[key], key  # dict-style reading still works
    assert i.codebook_size == 1000 and i.fsq_levels == (8, 5, 5, 5)
    assert i.provider == "CPUExecutionProvider"
    assert i.ort_version and i.ort_library
    assert i.inputs[0].dtype == "float32" and i.inputs[0].shape == (tiny_config["n_obs_steps"], tiny_config["obs_dim"])
    assert i.has_encoder and i.max_batch == 1 and i.batch_limit == 1024
    with pytest.raises(KeyError):
        i["manifest"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        i.num_tokens = -1


def test_info_normalization_is_the_manifests_in_float32(policy, tiny_bundle):
    from oat_edge.manifest import load_manifest

    want = load_manifest(tiny_bundle)["normalization"]
    n = policy.info.normalization
    for key, values in want.items():
        got = getattr(n, key)
        assert got.dtype == np.float32 and not got.flags.writeable, key
        np.testing.assert_array_equal(got, np.asarray(values, np.float32), err_msg=key)


def test_entry_file_path_loads_the_same_bundle(tiny_bundle, policy, tiny_config):
    p = Policy(f"{tiny_bundle}/model.onnx")
    obs = _obs(tiny_config, seed=6)
    np.testing.assert_allclose(p.act(obs, temperature=0), policy.act(obs, temperature=0))


def test_stats_account_for_the_time_and_tokens(policy, tiny_config):
    out, stats = policy.act(_obs(tiny_config), max_tokens=3, return_stats=True)
    assert out.shape == (tiny_config["horizon"], tiny_config["action_dim"])
    assert stats is policy.last_stats and stats["tokens_used"] == 3
    parts = stats["prefill_ms"] + stats["step_ms"] + stats["decode_ms"]
    assert stats["total_ms"] > 0 and parts <= stats["total_ms"] + 1e-6


def test_one_step_graph_run_per_generated_token(policy, tiny_config):
    before = policy.step_runs
    policy.act(_obs(tiny_config), max_tokens=3)
    assert policy.step_runs - before == 3


def test_tiny_latency_budget_stops_at_min_tokens(policy, tiny_config):
    out = policy.act(_obs(tiny_config), latency_budget_ms=1e-6, min_tokens=2)
    assert policy.last_stats["tokens_used"] == 2 and np.isfinite(out).all()


def test_gil_is_released_while_act_runs(tiny_bundle, tiny_config):
    # A second thread that needs the GIL every millisecond must make progress *during* one act()
    # call. With the GIL held it would be frozen for the whole call (0 ticks inside it).
    p = Policy(tiny_bundle, max_batch=64, batch_limit=32768)
    batch = 64
    while True:  # grow the batch until one call lasts >= 40 ms, whatever the machine
        big = _obs(tiny_config, batch=batch, seed=1)
        p.act(big)  # the first call at a new size grows the cache: time the second
        t0 = time.perf_counter()
        p.act(big)
        if time.perf_counter() - t0 >= 0.04 or batch >= 32768:
            break
        batch *= 2
    ticks, stop = [], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    th = threading.Thread(target=ticker)
    th.start()
    time.sleep(0.01)
    start = time.perf_counter()
    p.act(big)
    end = time.perf_counter()
    stop.set()
    th.join()
    inside = sum(start < t < end for t in ticks)
    assert end - start >= 0.02, "act() too fast to observe the GIL"
    assert inside >= 3, f"the other thread ran {inside} times during a {1e3 * (end - start):.0f} ms act()"


def test_concurrent_calls_on_one_policy_give_sequential_results(policy, tiny_config):
    # One policy owns one KV cache: calls from several threads (GIL released) must not interleave.
    obs = [_obs(tiny_config, batch=32, seed=s) for s in range(4)]
    expected = [policy.generate(o, temperature=0) for o in obs]
    mismatches, errors = [], []

    def worker(i):
        try:
            for _ in range(25):
                if not np.array_equal(policy.generate(obs[i], temperature=0), expected[i]):
                    mismatches.append(i)
        except Exception as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches, (errors, mismatches)


def test_package_imports_without_torch_or_metaworld(child_env):
    code = ("import sys, oat_edge; from oat_edge import Policy, InputError, BundleError, RuntimeLoadError; "
            "bad = [m for m in ('torch', 'metaworld', 'onnxruntime') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert oat_edge.__version__ == oat_edge._core.__version__  # C++ and Python: one version


def test_python_and_cpp_versions_are_pyprojects():
    import tomllib

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        want = tomllib.load(f)["project"]["version"]
    assert oat_edge.__version__ == want
    assert oat_edge._core.__version__ == want


def test_cuda_request_with_fallback_still_acts(tiny_bundle, tiny_config):
    p = Policy(tiny_bundle, device="cuda", allow_cpu_fallback=True)
    assert p.info.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert np.isfinite(p.act(_obs(tiny_config), temperature=0)).all()
