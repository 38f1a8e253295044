"""fork() while another thread is inside act(): the child must be able to use the inherited Policy
(its lock is never inherited held), or be told clearly why it cannot. Each case runs in its own
process session with a timeout, so a deadlock fails the test instead of hanging the run."""
import os
import signal
import subprocess
import sys

import pytest

_FORK_DURING_ACT = r"""
import os, sys, threading, time
import numpy as np
import oat_edge

p = oat_edge.Policy(sys.argv[1], threads=int(sys.argv[2]))
obs = np.zeros(p.info.inputs[0].shape, np.float32)
ref = p.act(obs, seed=1)
stop = threading.Event()
calls = [0]

def busy():  # keeps the policy's lock taken almost all the time
    while not stop.is_set():
        p.act(obs, seed=1)
        calls[0] += 1

t = threading.Thread(target=busy)
t.start()
while calls[0] < 5:
    time.sleep(0.001)
codes = []
for _ in range(int(sys.argv[3])):
    pid = os.fork()
    if pid == 0:
        try:
            out = p.act(obs, seed=1)
            os._exit(0 if np.array_equal(out, ref) else 3)
        except oat_edge.RuntimeLoadError as e:
            os._exit(4 if "do not survive fork()" in str(e) else 5)
        except BaseException:
            os._exit(6)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
stop.set()
t.join()
print(" ".join(map(str, codes)), calls[0])
"""


def _run(bundle, threads, forks, env):
    proc = subprocess.Popen([sys.executable, "-c", _FORK_DURING_ACT, str(bundle), str(threads), str(forks)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and any hung child
        proc.communicate()
        pytest.fail("fork() during act(): a process hung (deadlock on an inherited lock)")
    assert proc.returncode == 0, err[-2000:]
    codes, calls = out.split()[:-1], int(out.split()[-1])
    return [int(c) for c in codes], calls


def test_child_forked_while_another_thread_acts_gets_the_same_actions(tiny_bundle, child_env):
    codes, calls = _run(tiny_bundle, threads=1, forks=10, env=child_env)
    assert calls > 10  # the other thread really was acting throughout
    assert codes == [0] * 10, codes  # every child acted, with the parent's result


def test_child_of_a_policy_with_an_ort_thread_pool_gets_a_clear_error(tiny_bundle, child_env):
    codes, _ = _run(tiny_bundle, threads=2, forks=3, env=child_env)
    assert codes == [4] * 3, codes  # RuntimeLoadError naming fork(), not a hang or a crash
