"""Total decodability, measured through the C++ runtime: every id prefix of every length decodes to
a finite, in-bounds action chunk, and `act` on any finite observation does too.

Runs on the tiny bundle by default; OAT_EDGE_TEST_BUNDLE=<bundle> runs it on a trained one.
"""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _assert_valid_chunk(chunk, policy, bounds, what):
    i = policy.info
    lo, hi = bounds
    assert chunk.shape == (i["horizon"], i["action_dim"]), what
    assert chunk.dtype == np.float32, what
    assert np.isfinite(chunk).all(), f"{what}: non-finite output {chunk}"
    below, above = chunk < lo, chunk > hi
    assert not below.any() and not above.any(), (
        f"{what}: outside [action_low, action_high]: min {chunk.min(0)} < {lo} or max {chunk.max(0)} > {hi}")


@st.composite
def id_prefixes(draw, K, cb):
    """(ids[k], k) for every k in 1..K: random, constant (0, max, any), or one id repeated."""
    k = draw(st.integers(1, K))
    kind = draw(st.sampled_from(["random", "zeros", "max", "repeat"]))
    if kind == "random":
        ids = draw(st.lists(st.integers(0, cb - 1), min_size=k, max_size=k))
    elif kind == "zeros":
        ids = [0] * k
    elif kind == "max":
        ids = [cb - 1] * k
    else:
        ids = [draw(st.integers(0, cb - 1))] * k
    return np.asarray(ids, np.int64), k


def test_every_prefix_of_extreme_ids_decodes_in_bounds(policy, bounds):
    # The corners of the id space, exhaustively over k: all zeros, all max, alternating.
    K, cb = policy.info["num_tokens"], policy.info["codebook_size"]
    for k in range(1, K + 1):
        for name, ids in (("zeros", [0] * K), ("max", [cb - 1] * K), ("alternating", [0, cb - 1] * K)):
            ids = np.asarray(ids[:K], np.int64)
            _assert_valid_chunk(policy.detokenize(ids, k=k), policy, bounds, f"{name} k={k}")
            _assert_valid_chunk(policy.detokenize(ids[:k]), policy, bounds, f"{name}[:{k}]")


def test_random_id_prefixes_always_decode_finite_and_in_bounds(policy, bounds):
    K, cb = policy.info["num_tokens"], policy.info["codebook_size"]

    @SETTINGS
    @given(id_prefixes(K, cb))
    def prop(case):
        ids, k = case
        _assert_valid_chunk(policy.detokenize(ids), policy, bounds, f"ids={ids.tolist()}")

    prop()


def test_batched_detokenize_rows_equal_single_rows(policy, bounds):
    # A batch of random prefixes: each row decodes as it would alone (no cross-row leak).
    K, cb = policy.info["num_tokens"], policy.info["codebook_size"]
    rng = np.random.default_rng(0)
    for k in range(1, K + 1):
        ids = rng.integers(0, cb, size=(5, k))
        batch = policy.detokenize(ids)
        for b in range(5):
            np.testing.assert_array_equal(batch[b], policy.detokenize(ids[b]))
            _assert_valid_chunk(batch[b], policy, bounds, f"row {b} k={k}")


# Finite observations up to 1e30 in magnitude (the tiny bundle is fine up to ~1e37; only values
# within ~10x of FLT_MAX overflow inside the graphs, see the test after the next one).
OBS_LIMIT = float(np.float32(1e30))  # exactly representable: hypothesis needs float32 bounds


def _obs_strategy(shape):
    magnitudes = st.one_of(
        st.floats(-10.0, 10.0, width=32),
        st.sampled_from([0.0, -0.0, 1e6, -1e6, 1e-30, -1e-30, 1e-45, OBS_LIMIT, -OBS_LIMIT]),
        st.floats(-1e6, 1e6, width=32),
        st.floats(-OBS_LIMIT, OBS_LIMIT, width=32),
    )
    return hnp.arrays(np.float32, shape, elements=magnitudes)


def test_act_on_any_finite_observation_returns_in_bounds_chunk(policy, bounds):
    i = policy.info
    shape = (i["n_obs_steps"], i["obs_dim"])
    K = i["num_tokens"]

    @SETTINGS
    @given(_obs_strategy(shape), st.integers(1, K), st.integers(0, 2**64 - 1),
           st.sampled_from([None, 0.0, 0.5, 1.0, 5.0]))
    def prop(obs, k, seed, temperature):
        chunk = policy.act(obs, max_tokens=k, seed=seed, temperature=temperature)
        _assert_valid_chunk(chunk, policy, bounds, f"obs={obs.tolist()} k={k} T={temperature}")

    prop()


@pytest.mark.parametrize("value", [1e6, -1e6, OBS_LIMIT, -OBS_LIMIT, 0.0])
def test_act_on_constant_extreme_observation_is_in_bounds(policy, bounds, value):
    i = policy.info
    obs = np.full((i["n_obs_steps"], i["obs_dim"]), value, np.float32)
    for k in range(1, i["num_tokens"] + 1):
        _assert_valid_chunk(policy.act(obs, max_tokens=k, seed=k), policy, bounds, f"obs={value} k={k}")
        ids = policy.generate(obs, max_tokens=k, temperature=0.0)
        assert ((ids[:k] >= 0) & (ids[:k] < i["codebook_size"])).all(), ids
        assert (ids[k:] == -1).all(), ids


@pytest.mark.parametrize("value", [3.0e38, -3.0e38])
def test_observation_overflowing_inside_the_graph_raises_and_policy_recovers(bundle, value):
    # A finite obs near FLT_MAX overflows inside the step graph: the runtime must raise an oat_edge
    # error (never return garbage), and the *next* call must work again. A fresh Policy: this one
    # gets a failure on purpose. (Before the KV-cache reset, one such call left NaN in the cache
    # slots, and every later act() on that Policy failed.)
    from oat_edge import Policy
    from oat_edge.errors import BundleError, InputError

    p = Policy(bundle)
    i = p.info
    good = np.zeros((i["n_obs_steps"], i["obs_dim"]), np.float32)
    before = p.act(good, seed=7)
    bad = np.full_like(good, value)
    try:
        chunk = p.act(bad, seed=7)
    except (BundleError, InputError) as e:
        assert "non-finite" in str(e), e
    else:  # a bundle robust to this magnitude is fine too, if the result is valid
        lo, hi = p.info.normalization.action_low, p.info.normalization.action_high
        assert np.isfinite(chunk).all() and (chunk >= lo).all() and (chunk <= hi).all()
    np.testing.assert_array_equal(p.act(good, seed=7), before)
    for k in range(1, i["num_tokens"] + 1):
        assert np.isfinite(p.act(good, seed=k, max_tokens=k)).all()
