"""The loop refuses, at construction, every act() option the real runtime would refuse, with
the very error act() gives, whether the policy has check_options or only act()."""

import numpy as np
import pytest
from oat_edge.control import ControlLoop
from oat_edge.control.policy_spec import PolicySpec, info_bounds
from oat_edge.errors import InputError

BAD_OPTIONS = [{"max_tokens": 0}, {"max_tokens": 5}, {"max_tokens": 2.5}, {"temperature": -1.0},
               {"temperature": float("nan")}, {"top_k": -1}, {"top_k": 10**6},
               {"latency_budget_ms": 0}, {"latency_budget_ms": -3.0}, {"seed": -1}]


@pytest.fixture(scope="module")
def policy(tiny_bundle):
    import oat_edge
    return oat_edge.Policy(tiny_bundle)


class ActOnly:
    """A policy without check_options: the loop falls back to one seeded dry-run act()."""

    def __init__(self, policy):
        self.info, self.act = policy.info, policy.act


def _act_error(policy, opt):
    shape = (policy.info["n_obs_steps"], policy.info["obs_dim"])
    with pytest.raises(InputError) as e:
        policy.act(np.zeros(shape, np.float32), **opt)
    return str(e.value)


@pytest.mark.parametrize("wrap", [lambda p: p, ActOnly], ids=["policy", "act-only"])
@pytest.mark.parametrize("opt", BAD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_loop_construction_raises_what_act_would(policy, wrap, opt):
    want = _act_error(policy, opt)
    for background, virtual in ((True, False), (False, True)):
        with pytest.raises(InputError) as e:
            ControlLoop(wrap(policy), lambda: None, lambda a: None, background=background,
                        virtual_time=virtual, **opt)
        assert str(e.value) == want


@pytest.mark.parametrize("wrap", [lambda p: p, ActOnly], ids=["policy", "act-only"])
def test_good_options_pass_the_check_and_the_loop_runs(policy, wrap):
    obs = np.zeros((policy.info["n_obs_steps"], policy.info["obs_dim"]), np.float32)
    with ControlLoop(wrap(policy), lambda: obs, lambda a: None, virtual_time=True,
                     background=False, max_tokens=2, temperature=1.0, top_k=5, seed=0) as loop:
        s = loop.run(3)
    assert s["errors"] == 0 and s["tokens_hist"] == {"2": 1}


def test_spec_reads_dict_or_typed_info_and_bounds_from_either():
    class Typed:
        horizon, action_dim, n_action_steps, n_obs_steps, obs_dim = 8, 2, 4, 2, 5
        normalization = {"action_low": [-1, -2], "action_high": [1, 2]}

    class P:
        info = Typed()

        def act(self, obs, **kw):
            raise AssertionError("not called")

    assert PolicySpec.of(P()) == PolicySpec(8, 2, 4, (2, 5))
    assert info_bounds(P()) == ([-1, -2], [1, 2])
    legacy = type("L", (), {"info": {"manifest": {"normalization": {"action_low": [0],
                                                                    "action_high": [1]}}}})()
    assert info_bounds(legacy) == ([0], [1])


def test_policy_without_act_or_info_is_a_clear_type_error():
    with pytest.raises(TypeError, match="oat_edge.Policy API"):
        ControlLoop(object(), lambda: None, lambda a: None)
