import numpy as np

import oat_edge


def _policy(tiny_bundle):
    return oat_edge.Policy(tiny_bundle)


def test_prepare_realtime_memory_without_locking_pins_malloc_and_says_so():
    s = oat_edge.prepare_realtime_memory(lock_memory=False)
    assert s["malloc_pinned"] is True
    assert s["locked"] is False
    assert "no trim, no mmap" in s["message"] and "not requested" in s["message"]


def test_thread_faults_see_the_first_touch_of_fresh_memory():
    # The counter behind the "0 page faults per act" claim must be able to see faults at all.
    before = oat_edge.thread_faults()
    a = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB never touched before
    after = oat_edge.thread_faults()
    assert a[-1] == 1
    assert after["minor"] - before["minor"] >= 32  # 32 faults with 2 MiB huge pages, 16384 without
    assert set(after) == {"minor", "major", "voluntary_switches"}


def test_act_after_warm_up_takes_no_page_fault_on_the_calling_thread(tiny_bundle, tiny_config):
    oat_edge.prepare_realtime_memory(lock_memory=False)
    policy = _policy(tiny_bundle)
    obs = np.zeros((tiny_config["n_obs_steps"], tiny_config["obs_dim"]), np.float32)
    out = [policy.act(obs, seed=i) for i in range(20)]

    def loop():
        for i in range(300):
            out[i % 20] = policy.act(obs, seed=i)

    loop()  # warm-up: the same calls, so Python's own objects exist already too
    before = oat_edge.thread_faults()
    loop()
    after = oat_edge.thread_faults()
    assert after["minor"] - before["minor"] == 0
    assert after["major"] - before["major"] == 0
