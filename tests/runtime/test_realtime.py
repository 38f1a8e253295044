import ast
import subprocess
import sys

import numpy as np
import oat_edge
import pytest


def test_prepare_realtime_memory_without_locking_pins_malloc_and_says_so():
    s = oat_edge.prepare_realtime_memory(lock_memory=False)
    assert s["malloc_pinned"] is True
    assert s["locked"] is False
    assert "no trim, no mmap" in s["message"] and "not requested" in s["message"]


@pytest.mark.parametrize("value", ["false", 0, None])
def test_prepare_realtime_memory_rejects_a_non_bool_lock_flag(value):
    with pytest.raises(oat_edge.InputError, match="lock_memory: expected True or False"):
        oat_edge.prepare_realtime_memory(lock_memory=value)


def test_thread_faults_see_the_first_touch_of_fresh_memory():
    # The counter behind the "0 page faults per act" claim must be able to see faults at all.
    before = oat_edge.thread_faults()
    a = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB never touched before
    after = oat_edge.thread_faults()
    assert a[-1] == 1
    assert after["minor"] - before["minor"] >= 32  # 32 faults with 2 MiB huge pages, 16384 without
    assert set(after) == {"minor", "major", "voluntary_switches"}


_STEADY_LOOP = r"""
import sys, numpy as np, oat_edge
status = oat_edge.prepare_realtime_memory(lock_memory=sys.argv[2] == "lock")
policy = oat_edge.Policy(sys.argv[1])
obs = np.zeros((policy.info["n_obs_steps"], policy.info["obs_dim"]), np.float32)
out = [policy.act(obs, seed=i) for i in range(20)]

def loop():
    for i in range(300):
        out[i % 20] = policy.act(obs, seed=i)

loop()  # warm-up: the same calls, so Python's own objects exist already too
rounds = []
for _ in range(5):
    f0 = oat_edge.thread_faults()
    loop()
    f1 = oat_edge.thread_faults()
    rounds.append((f1["minor"] - f0["minor"], f1["major"] - f0["major"]))
print(repr((status["locked"], status["message"], rounds)))
"""


def _steady_faults(bundle, env, lock):
    out = subprocess.run([sys.executable, "-c", _STEADY_LOOP, str(bundle), "lock" if lock else "no"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return ast.literal_eval(out.stdout.strip())


def test_act_after_warm_up_with_memory_locked_takes_no_page_fault_on_the_calling_thread(tiny_bundle, child_env):
    # The full recipe (mlockall): 5 x 300 acts after warm-up, not one fault.
    locked, message, rounds = _steady_faults(tiny_bundle, child_env, lock=True)
    if not locked:
        pytest.skip(f"this process may not lock memory: {message}")
    assert rounds == [(0, 0)] * 5


def test_act_after_warm_up_without_locking_faults_at_most_rarely(tiny_bundle, child_env):
    # Unlocked, the kernel still maps a page now and then that is neither ORT's nor oat_edge's
    # (Python's allocator maps its own arenas; a process that only sleeps faults too): measured
    # 6-13 per 9,000 acts on a 2-core VM. An act that allocated from the kernel would fault on
    # nearly every call: 1,500 here.
    _, _, rounds = _steady_faults(tiny_bundle, child_env, lock=False)
    assert sum(minor for minor, _ in rounds) <= 15, rounds
    assert sum(major for _, major in rounds) == 0, rounds


_FIRST_ACT = r"""
import sys, numpy as np, oat_edge
oat_edge.prepare_realtime_memory(lock_memory=False)
# Python's and pybind's own first-call costs are paid on another Policy first: what is measured
# below is the first act of a freshly constructed one.
q = oat_edge.Policy(sys.argv[1])
obs = np.zeros(q.info["n_obs_steps"] * q.info["obs_dim"], np.float32).reshape(q.info["n_obs_steps"], -1)
for kw in ({"temperature": 0}, {"seed": 0}, {"temperature": 0}, {"seed": 0}):
    q.act(obs, **kw)
p = oat_edge.Policy(sys.argv[1], warmup=sys.argv[2] == "1")
runs = p.step_runs
f0 = oat_edge.thread_faults()
p.act(obs, seed=0)
f1 = oat_edge.thread_faults()
print(f1["minor"] - f0["minor"], runs)
"""


def _first_act_faults(bundle, warmup, env):
    out = subprocess.run([sys.executable, "-c", _FIRST_ACT, str(bundle), "1" if warmup else "0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    faults, runs = map(int, out.stdout.split())
    return faults, runs


def test_constructor_warm_up_takes_the_first_run_page_faults_out_of_the_first_act(tiny_bundle, child_env):
    # Fresh processes: ORT sizes its arenas on a graph's first runs. Without warm-up the first act
    # faults in fresh memory; with it (the default) the first act in a control loop takes none.
    cold, _ = _first_act_faults(tiny_bundle, warmup=False, env=child_env)
    warm, runs = _first_act_faults(tiny_bundle, warmup=True, env=child_env)
    assert cold >= 10  # measured 32-33 for this bundle
    # 0 in C++ (test_policy_e2e pins it exactly); from Python, the interpreter's own allocator
    # now and then maps a fresh arena for the call's result objects: one page, not ORT's.
    assert warm <= 1
    assert runs == 0  # the warm-up leaves the counters as after load
