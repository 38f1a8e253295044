import numpy as np
import pytest

from oat_edge.control import ControlLoop
from control_fakes import FakePolicy


class Counter:
    """get_obs returns the number of the cycle it is called in (set by send_action)."""

    def __init__(self):
        self.cycle = 0
        self.sent = []

    def get_obs(self):
        return np.array([[float(self.cycle)]])

    def send(self, a):
        self.sent.append(np.array(a))
        self.cycle += 1


def encoded_chunk(i, obs, h=16, d=1):
    # chunk[j] = 1000 * (cycle of the observation) + j: each action says where it came from.
    return (1000 * obs[0, 0] + np.arange(h))[:, None].repeat(d, axis=1)


def test_sync_loop_replans_every_n_action_steps_from_the_current_obs():
    c = Counter()
    p = FakePolicy(horizon=8, action_dim=1, n_action_steps=3,
                   chunk_fn=lambda i, obs: encoded_chunk(i, obs, h=8))
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=False, virtual_time=True)
    s = loop.run(9)
    assert [float(a[0]) for a in c.sent] == [0, 1, 2, 3000, 3001, 3002, 6000, 6001, 6002]
    assert len(p.calls) == 3 and s["replans"] == 3 and s["overruns"] == 0


def test_background_chunk_is_aligned_by_elapsed_cycles():
    c = Counter()
    p = FakePolicy(horizon=16, action_dim=1, n_action_steps=8, delay_s=0.025,
                   chunk_fn=lambda i, obs: encoded_chunk(i, obs))
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=True, virtual_time=True)
    loop.run(60)
    first = next(i for i, r in enumerate(loop.records) if not r["held"])
    assert first >= 2  # 25 ms latency at 50 Hz: the first chunk lands 2 cycles later
    for cycle, a in enumerate(c.sent[first:], start=first):
        obs_cycle, j = divmod(int(a[0]), 1000)
        assert obs_cycle + j == cycle  # action j of a chunk is sent j cycles after its obs
        assert j < 8                   # and never beyond the receding horizon
    assert loop.summary()["overruns"] == 0


def test_slow_act_overruns_are_counted_exactly():
    # latency 3 cycles (42-60 ms at 50 Hz) > what a 2-step receding horizon can hide:
    # each replan yields 1 aligned action, then 2 cycles hold the last action.
    c = Counter()
    p = FakePolicy(horizon=4, action_dim=1, n_action_steps=2, delay_s=0.042,
                   chunk_fn=lambda i, obs: encoded_chunk(i, obs, h=4))
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=True, virtual_time=True)
    s = loop.run(30)
    assert [r["held"] for r in loop.records[:3]] == [True] * 3   # start-up, not overruns
    assert s["overruns"] == 18
    assert [r["overrun"] for r in loop.records[3:9]] == [False, True, True] * 2


def test_real_thread_never_blocks_the_actuator_while_act_is_slow():
    c = Counter()
    p = FakePolicy(horizon=8, action_dim=1, n_action_steps=4, delay_s=0.06,
                   chunk_fn=lambda i, obs: encoded_chunk(i, obs, h=8))
    with ControlLoop(p, c.get_obs, c.send, hz=100, background=True) as loop:
        s = loop.run(40)
    assert len(c.sent) == 40
    assert s["overruns"] > 0 and s["replans"] >= 2
    assert s["work_ms"]["max"] < 5.0  # the cycle itself never waits for the 60 ms act


def test_nan_chunk_is_rejected_and_last_safe_action_held():
    def chunk_fn(i, obs):
        return np.full((4, 1), np.nan) if i == 1 else np.full((4, 1), 0.5)
    c = Counter()
    p = FakePolicy(horizon=4, action_dim=1, n_action_steps=2, chunk_fn=chunk_fn)
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=False, virtual_time=True)
    s = loop.run(6)
    assert all(np.isfinite(a).all() for a in c.sent)
    assert [float(a[0]) for a in c.sent] == [0.5] * 6
    assert s["rejected_chunks"] == 1
    assert [r["held"] for r in loop.records] == [False, False, True, False, False, False]


def test_exception_in_act_is_recorded_and_loop_keeps_running():
    c = Counter()
    p = FakePolicy(horizon=4, action_dim=1, n_action_steps=2, raise_on={1},
                   chunk_fn=lambda i, obs: np.full((4, 1), 0.25))
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=False, virtual_time=True)
    s = loop.run(8)
    assert len(c.sent) == 8
    assert s["errors"] == 1 and "boom in call 1" in s["error_messages"][0]
    assert any(r["error"] and "boom" in r["error"] for r in loop.records)
    assert [float(a[0]) for a in c.sent] == [0.25] * 8


def test_actions_are_clamped_to_the_bundle_bounds():
    c = Counter()
    p = FakePolicy(horizon=4, action_dim=2, n_action_steps=4, bounds=(-1, 1),
                   chunk_fn=lambda i, obs: np.array([[3.0, -0.5]] * 4))
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=False, virtual_time=True)
    loop.run(4)
    assert all(a.tolist() == [1.0, -0.5] for a in c.sent)


def test_budget_and_token_limits_are_forwarded_and_tokens_histogrammed():
    c = Counter()
    p = FakePolicy(horizon=4, action_dim=1, n_action_steps=2)
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=False, virtual_time=True,
                       max_tokens=2, latency_budget_ms=7.5, seed=10)
    s = loop.run(6)
    assert [k["max_tokens"] for k in p.calls] == [2, 2, 2]
    assert [k["latency_budget_ms"] for k in p.calls] == [7.5] * 3
    assert [k["seed"] for k in p.calls] == [10, 11, 12]
    assert s["tokens_hist"] == {"2": 3}


def test_run_writes_csv_and_json(tmp_path):
    import csv, json
    c = Counter()
    loop = ControlLoop(FakePolicy(), c.get_obs, c.send, hz=50, background=False,
                       virtual_time=True)
    loop.run(5, csv_path=tmp_path / "c.csv", json_path=tmp_path / "s.json")
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert len(rows) == 5 and "jitter_ms" in rows[0] and "overrun" in rows[0]
    assert json.load(open(tmp_path / "s.json"))["cycles"] == 5


def test_policy_without_bounds_needs_explicit_bounds():
    p = FakePolicy()
    del p.info["action_low"]
    with pytest.raises(ValueError, match="action bounds unknown"):
        ControlLoop(p, lambda: None, lambda a: None, background=False)
    ControlLoop(p, lambda: None, lambda a: None, background=False,
                action_low=[-1, -1], action_high=[1, 1])


@pytest.mark.parametrize("kw", [{"max_tokens": 0}, {"latency_budget_ms": -1}, {"hz": 0},
                                {"n_action_steps": 99}])
def test_bad_loop_arguments_are_errors(kw):
    with pytest.raises(ValueError):
        ControlLoop(FakePolicy(), lambda: None, lambda a: None, background=False, **kw)


def test_telemetry_fields_are_attached_to_each_record():
    class T:
        def latest(self):
            return {"gpu_load_pct": 12.0}
    c = Counter()
    loop = ControlLoop(FakePolicy(), c.get_obs, c.send, background=False, virtual_time=True,
                       telemetry=T())
    loop.run(3)
    assert all(r["gpu_load_pct"] == 12.0 for r in loop.records)


def test_reset_plan_discards_the_chunk_in_flight_from_the_old_world():
    c = Counter()
    p = FakePolicy(horizon=16, action_dim=1, n_action_steps=8, delay_s=0.025,
                   chunk_fn=lambda i, obs: encoded_chunk(i, obs))
    loop = ControlLoop(p, c.get_obs, c.send, hz=50, background=True, virtual_time=True)
    loop.step()            # cycle 0: replan from obs 0 starts, lands at cycle 2
    loop.reset_plan()      # the world changed after cycle 0
    loop.run(6)
    assert loop.stale_chunks == 1
    sources = {int(a[0]) // 1000 for a, r in zip(c.sent, loop.records) if not r["held"]}
    assert 0 not in sources and sources  # only chunks planned after the reset were executed
