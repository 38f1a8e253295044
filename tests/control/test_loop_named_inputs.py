"""ControlLoop drives a camera bundle: get_obs returns the dict act() takes; each reading is
checked by name (a bad one is a sensor error and is never planned from) and copied."""
import numpy as np
import pytest
from oat_edge import Policy
from oat_edge.control import ControlLoop

STATE, CORNER, TOP = "observation.state", "observation.images.corner", "observation.images.topview"


@pytest.fixture(scope="module")
def policy(pixel_bundle):
    return Policy(pixel_bundle)


def reading(seed=0):
    rng = np.random.default_rng(seed)
    return {STATE: rng.normal(size=(2, 5)).astype(np.float32),
            CORNER: rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8),
            TOP: rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)}


def run(policy, get_obs, cycles=12, background=False):
    sent = []
    loop = ControlLoop(policy, get_obs, sent.append, hz=50, n_action_steps=4, virtual_time=True,
                       background=background)
    try:
        s = loop.run(cycles)
    finally:
        loop.close()
    return s, sent


@pytest.mark.parametrize("background", [False, True], ids=["inline", "worker"])
def test_a_camera_bundle_runs_from_dict_readings_with_the_chunks_act_gives(policy, background):
    obs = reading()
    s, sent = run(policy, lambda: obs, background=background)
    assert s["errors"] == 0 and s["cycles"] == 12 and len(sent) == 12
    assert s["held"] <= 1  # the first chunk may land one cycle late in background mode
    # inline and greedy, the first four actions are the first chunk act() gives for that reading
    sent = []
    loop = ControlLoop(policy, lambda: obs, sent.append, hz=50, n_action_steps=4, virtual_time=True,
                       background=False, temperature=0.0)
    try:
        loop.run(4)
    finally:
        loop.close()
    np.testing.assert_allclose(np.array(sent), policy.act(obs, temperature=0.0)[:4], rtol=0, atol=1e-6)


def test_the_loop_plans_from_a_copy_of_the_reading_not_the_callers_buffer(policy):
    buf = reading()
    seen = []

    class Spy:
        info = policy.info

        def check_options(self, **kw):
            policy.check_options(**kw)

        def act(self, obs, **kw):
            seen.append(obs)
            return policy.act(obs, **kw)

    def get_obs():
        return buf

    s, _ = run(Spy(), get_obs, cycles=1)
    buf[CORNER][:] = 0  # the driver reuses its buffer after get_obs returned
    assert s["errors"] == 0 and seen and seen[0][CORNER].any()
    assert seen[0][CORNER] is not buf[CORNER]


BAD = {
    "an array, not a dict": (lambda o: o[STATE], "expected a dict of the bundle's named inputs"),
    "a camera missing": (lambda o: {k: v for k, v in o.items() if k != TOP}, "missing ['observation.images.topview']"),
    "an unknown key": (lambda o: dict(o, wrist=o[CORNER]), "unknown ['wrist']"),
    "a float frame": (lambda o: dict(o, **{CORNER: o[CORNER] / 255.0}), "has dtype float64, expected uint8"),
    "a channels-first frame": (lambda o: dict(o, **{TOP: np.ascontiguousarray(o[TOP].transpose(0, 3, 1, 2))}),
                               "has shape [2, 3, 32, 32], expected uint8 [2, 32, 32, 3]"),
    "one step of history": (lambda o: dict(o, **{STATE: o[STATE][:1]}), "has shape [1, 5], expected float32 [2, 5]"),
    "NaN in the state": (lambda o: dict(o, **{STATE: np.full((2, 5), np.nan, np.float32)}), "NaN or Inf"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_reading_is_a_sensor_error_and_the_loop_holds(policy, case):
    edit, message = BAD[case]
    bad = edit(reading())
    s, sent = run(policy, lambda: bad, cycles=6)
    assert s["errors_by_source"].get("sensor", 0) >= 1 and s["errors_by_source"].get("policy", 0) == 0
    assert any(message in m for m in s["error_counts"]), s["error_counts"]
    assert len(sent) == 6 and all(np.all(np.isfinite(a)) for a in sent)  # held, never garbage
