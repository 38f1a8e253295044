"""Named inputs (a camera bundle): `policy.act({name: array})` through the C++ runtime.

The bundle is tests/fixtures/tiny_pixel_bundle.py's (observation.state [5] and two uint8 cameras
[32, 32, 3], random weights, written by the real exporter). The reference is the same graphs run by
onnxruntime from Python (oat_export.named_parity.NamedOrtBundle): the C++ runtime must give the
same tokens and actions. Every bad input is an InputError naming the key.
"""
import numpy as np
import pytest
from oat_edge import InputError, Policy

pytest.importorskip("torch")
pytest.importorskip("oat_export")

STATE, CORNER, TOP = "observation.state", "observation.images.corner", "observation.images.topview"


@pytest.fixture(scope="module")
def policy(pixel_bundle):
    return Policy(pixel_bundle)


@pytest.fixture(scope="module")
def reference(pixel_bundle):
    from oat_export.named_parity import NamedOrtBundle

    return NamedOrtBundle(pixel_bundle)


def observation(batch=None, seed=0, size=32):
    """Raw inputs as a robot has them: state float32, frames uint8 channels last; [S, ...] or [B, S, ...]."""
    rng = np.random.default_rng(seed)
    lead = (2,) if batch is None else (batch, 2)
    return {STATE: rng.normal(size=(*lead, 5)).astype(np.float32),
            CORNER: rng.integers(0, 256, (*lead, size, size, 3), dtype=np.uint8),
            TOP: rng.integers(0, 256, (*lead, size, size, 3), dtype=np.uint8)}


def test_info_lists_the_spec_inputs_in_spec_order(policy):
    info = policy.info
    assert [(i.name, i.dtype, i.shape) for i in info.inputs] == [
        (STATE, "float32", (2, 5)), (CORNER, "uint8", (2, 32, 32, 3)), (TOP, "uint8", (2, 32, 32, 3))]
    assert [i["name"] for i in info.observation["inputs"]] == [STATE, CORNER, TOP]
    assert info.observation["n_obs_steps"] == info.n_obs_steps == 2
    assert info.normalization.obs_scale.size == 0 and info.normalization.obs_offset.size == 0  # in the graph
    assert info.control_hz is None


@pytest.mark.parametrize("batch", [1, 3])
def test_dict_act_matches_the_onnxruntime_reference(policy, reference, batch):
    obs = observation(batch, seed=batch)
    ids = policy.generate(obs, temperature=0.0)
    want_ids = reference.generate_norm(obs, temperature=0.0)
    np.testing.assert_array_equal(ids, want_ids)
    got = policy.act(obs, temperature=0.0)
    want = reference.act(obs, temperature=0.0)
    assert got.shape == (batch, policy.info.horizon, policy.info.action_dim)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_seeded_sampling_matches_the_reference_and_a_prefix_decodes_like_it(policy, reference):
    obs = observation(3, seed=7)
    ids = policy.generate(obs, temperature=1.0, top_k=0, seed=11, max_tokens=3)
    np.testing.assert_array_equal(ids[:, :3], reference.generate_norm(obs, 3, 1.0, 0, seed=11))
    assert (ids[:, 3:] == -1).all()
    np.testing.assert_allclose(policy.act(obs, temperature=1.0, top_k=0, seed=11, max_tokens=3),
                               reference.act(obs, 3, 1.0, 0, seed=11), rtol=1e-5, atol=1e-5)


def test_unbatched_dict_gives_one_chunk_equal_to_a_batch_of_one(policy):
    obs = observation(None, seed=3)
    one = policy.act(obs, temperature=0.0)
    batched = policy.act({k: v[None] for k, v in obs.items()}, temperature=0.0)
    assert one.shape == (policy.info.horizon, policy.info.action_dim)
    np.testing.assert_array_equal(one, batched[0])
    assert policy.generate(obs, temperature=0.0).shape == (policy.info.num_tokens,)


def test_rows_of_a_batch_are_independent(policy):
    obs = observation(3, seed=5)
    rows = [policy.act({k: v[b] for k, v in obs.items()}, temperature=0.0) for b in range(3)]
    np.testing.assert_allclose(policy.act(obs, temperature=0.0), np.stack(rows), rtol=1e-5, atol=1e-6)


def test_non_contiguous_frames_and_float64_state_are_read_correctly(policy):
    obs = observation(2, seed=9)
    wide = np.zeros((2, 2, 32, 64, 3), np.uint8)
    wide[:, :, :, ::2] = obs[CORNER]  # every other column: a strided view of the same frame
    planar = np.ascontiguousarray(obs[TOP].transpose(0, 1, 4, 2, 3)).transpose(0, 1, 3, 4, 2)  # HWC view of CHW
    odd = {STATE: obs[STATE].astype(np.float64), CORNER: wide[:, :, :, ::2], TOP: planar}
    assert not odd[CORNER].flags.c_contiguous and not odd[TOP].flags.c_contiguous
    np.testing.assert_array_equal(policy.act(odd, temperature=0.0), policy.act(obs, temperature=0.0))


def test_key_order_does_not_matter(policy):
    obs = observation(1, seed=4)
    shuffled = {TOP: obs[TOP], STATE: obs[STATE], CORNER: obs[CORNER]}
    np.testing.assert_array_equal(policy.act(shuffled, temperature=0.0), policy.act(obs, temperature=0.0))


def _bad(edit):
    """A batch of 2 changed by `edit(obs)` in place, or replaced by what it returns."""
    def make():
        obs = observation(2, seed=1)
        out = edit(obs)
        return obs if out is None else out
    return make


BAD = {
    "missing camera": (_bad(lambda o: o.__delitem__(TOP)), ["missing 'observation.images.topview'"]),
    "extra camera": (_bad(lambda o: o.update({"observation.images.wrist": o[CORNER]})),
                     ["unknown 'observation.images.wrist'", "expected exactly the names [observation.state, "
                      "observation.images.corner, observation.images.topview]"]),
    "unknown key": (_bad(lambda o: o.update({"obs": o.pop(STATE)})), ["missing 'observation.state'", "unknown 'obs'"]),
    "wrong size": (_bad(lambda o: o.update({CORNER: np.zeros((2, 2, 64, 64, 3), np.uint8)})),
                   ["observation.images.corner: expected uint8 [B, 2, 32, 32, 3], got uint8 [2, 2, 64, 64, 3]"]),
    "channels-first frame": (_bad(lambda o: o.update({TOP: np.ascontiguousarray(o[TOP].transpose(0, 1, 4, 2, 3))})),
                             ["observation.images.topview: expected uint8 [B, 2, 32, 32, 3], got uint8 "
                              "[2, 2, 3, 32, 32]", "channels first"]),
    "float image": (_bad(lambda o: o.update({CORNER: o[CORNER].astype(np.float32) / 255})),
                    ["observation.images.corner: expected uint8", "got float32", "raw uint8 frames"]),
    "float64 image": (_bad(lambda o: o.update({CORNER: o[CORNER].astype(np.float64)})),
                      ["observation.images.corner: expected uint8", "got float64"]),
    "wrong history length": (_bad(lambda o: o.update({TOP: np.concatenate([o[TOP], o[TOP][:, :1]], axis=1)})),
                             ["observation.images.topview: expected uint8 [B, 2, 32, 32, 3], got uint8 "
                              "[2, 3, 32, 32, 3]", "n_obs_steps = 2"]),
    "state history length": (_bad(lambda o: o.update({STATE: o[STATE][:, :1]})),
                             ["observation.state: expected float32 [B, 2, 5], got float32 [2, 1, 5]"]),
    "mismatched batch": (_bad(lambda o: o.update({TOP: o[TOP][:1]})),
                         ["observation.images.topview: batch 1, but observation.state has batch 2"]),
    "uint8 state": (_bad(lambda o: o.update({STATE: o[STATE].astype(np.uint8)})),
                    ["observation.state: expected float32 [B, 2, 5], got uint8"]),
    "NaN state": (_bad(lambda o: o[STATE].__setitem__((1, 0, 3), np.nan)),
                  ["observation.state[1][0][3]", "is NaN"]),
    "empty batch": (_bad(lambda o: {k: v[:0] for k, v in o.items()}), ["observation.state: empty batch"]),
    "non-str key": (_bad(lambda o: o.update({3: o.pop(STATE)})), ["observation keys: expected input names (str)"]),
    "array form": (lambda: observation(2)[STATE], ["obs: this bundle reads the named inputs [observation.state, "
                                                   "observation.images.corner, observation.images.topview]",
                                                   "a dict {name: array}"]),
    "empty dict": (lambda: {}, ["missing 'observation.state', 'observation.images.corner', "
                                "'observation.images.topview'"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_an_input_error_naming_the_key(policy, case):
    make, parts = BAD[case]
    for call in (policy.act, policy.generate):
        with pytest.raises(InputError) as e:
            call(make())
        for part in parts:
            assert part in str(e.value), f"{part!r} missing from: {e.value}"


def test_a_bad_call_leaves_the_policy_usable(policy):
    obs = observation(1, seed=2)
    before = policy.act(obs, temperature=0.0)
    with pytest.raises(InputError):
        policy.act({**obs, TOP: obs[TOP][:, :, :16]})
    np.testing.assert_array_equal(policy.act(obs, temperature=0.0), before)


def test_state_only_named_bundle_takes_the_array_form_too(tmp_path):
    from tiny_pixel_bundle import write_tiny_pixel_bundle

    p = Policy(write_tiny_pixel_bundle(tmp_path / "state_only", cameras=()))
    assert [i.name for i in p.info.inputs] == [STATE]
    state = observation(3, seed=6)[STATE]
    by_name = p.act({STATE: state}, temperature=0.0)
    np.testing.assert_array_equal(p.act(state, temperature=0.0), by_name)
    np.testing.assert_array_equal(p.act(state[0], temperature=0.0), by_name[0])
    with pytest.raises(InputError, match=r"observation.state: expected float32 \[B, 2, 5\], got float32 \[3, 2, 4\]"):
        p.act(state[..., :4])


def test_neutral_observation_is_the_state_that_normalizes_to_zero_and_black_frames(policy):
    obs = policy.info.neutral_observation()
    spec = {i["name"]: i for i in policy.info.observation["inputs"]}
    n = spec[STATE]["normalize"]
    np.testing.assert_allclose(obs[STATE] * np.float32(n["scale"]) + np.float32(n["offset"]), 0, atol=1e-6)
    assert obs[CORNER].dtype == np.uint8 and obs[CORNER].shape == (2, 32, 32, 3) and not obs[TOP].any()
    assert policy.act(obs).shape == (policy.info.horizon, policy.info.action_dim)
