"""Ctrl-C stops every long-running verb within seconds, with its worker processes, and keeps
what had finished. Ctrl-C at a terminal signals the whole process group; so do these tests."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(ROOT, "models", "oat-metaworld-mt3")
CHECKPOINT = BUNDLE + ".pt"
STOP_S = 15.0  # generous for a loaded 2-core machine; a hang would take minutes

pytestmark = pytest.mark.timing


def _group_alive(pgid) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies still count for killpg; look for live members
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _members(pgid) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        n += 1
            except OSError:
                pass
    return n


def _interrupt(argv, ready, env, timeout=120):
    """Start `oat-edge argv` in its own process group, wait until ready() is true, Ctrl-C it.
    Returns (returncode, stdout, stderr, seconds from Ctrl-C to exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "oat_edge.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready(proc):
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"exited before it was interrupted ({proc.returncode}): {err[-2000:]}")
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.2)
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_S + 30)
        stopped = time.monotonic() - t
        for _ in range(50):  # the workers go with it
            if not _group_alive(proc.pid):
                break
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "worker processes outlived the command"
        return proc.returncode, out, err, stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _after(seconds):
    t0 = time.monotonic()
    return lambda proc: time.monotonic() - t0 > seconds


def test_ctrl_c_stops_eval_and_its_workers_and_saves_finished_episodes(tmp_path, child_env):
    pytest.importorskip("metaworld")
    out = tmp_path / "eval"
    started = {}

    def ready(proc):  # both workers exist, then give them time to finish an episode or two
        if _members(proc.pid) >= 3:
            started.setdefault("t", time.monotonic())
        return "t" in started and time.monotonic() - started["t"] > 12

    rc, _, err, stopped = _interrupt(
        ["eval", BUNDLE, "--tasks", "reach-v3", "push-v3", "--ks", "8", "--episodes", "2000",
         "--workers", "2", "--no-expert", "--out", str(out)], ready, child_env)
    assert rc == 130 and stopped < STOP_S, (rc, stopped, err[-2000:])
    assert "interrupted" in err
    assert "eval shards" not in err  # no progress bar when stderr is not a terminal
    res = json.loads((out / "results.json").read_text())
    assert res["interrupted"] is True
    done = [c["episodes_done"] for t in res["per_task"].values() for c in t.values()]
    # what finished, not a made-up 2000 (reach alone can finish 200 episodes in the 12 s window)
    assert done and all(0 < n < 2000 for n in done), done
    assert "Interrupted" in (out / "results.md").read_text()


def test_ctrl_c_stops_training_and_saves_a_resumable_checkpoint(tmp_path, child_env, write_demos):
    write_demos(tmp_path / "d.npz", lengths=(40, 41))
    run = tmp_path / "tok"
    rc, out, err, stopped = _interrupt(
        ["train-tokenizer", "--demos", str(tmp_path / "d.npz"), "--out", str(run), "--steps",
         "100000", "--threads", "1", "--log-every", "1"],
        lambda p: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 200,
        child_env)
    assert rc == 130 and stopped < STOP_S, (rc, stopped, err[-2000:])
    assert "interrupted at step" in out and "--resume" in out
    assert "it/s" not in err and "\r" not in err  # no progress bar when stderr is not a terminal
    import torch
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert 0 < ck["step"] < 100000
    assert not (run / "tokenizer.pt").exists()  # an unfinished run is not passed off as done


def test_ctrl_c_stops_demos_and_its_workers_without_a_partial_file(tmp_path, child_env):
    pytest.importorskip("metaworld")
    out = tmp_path / "demos.npz"
    rc, _, err, stopped = _interrupt(
        ["demos", "--tasks", "reach-v3", "--episodes", "500", "--workers", "2", "--out", str(out)],
        lambda p: _members(p.pid) >= 3, child_env)
    assert rc == 130 and stopped < STOP_S, (rc, stopped, err[-2000:])
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_ctrl_c_stops_export_and_leaves_no_half_bundle(tmp_path, child_env):
    pytest.importorskip("torch")
    out = tmp_path / "bundle"
    rc, _, err, stopped = _interrupt(
        ["export", "--checkpoint", CHECKPOINT, "--out", str(out), "--variants", "fp16", "int8"],
        lambda p: any(f.startswith(".bundle.export") for f in os.listdir(tmp_path)), child_env)
    # The CLI's own exit after its clean-up is 130. Once in many CI runs the same Ctrl-C, after
    # "oat-edge: interrupted" was printed, ended the interpreter by SIGINT itself during export's
    # shutdown (-2): still an interrupted exit; what must hold either way is the clean-up below.
    assert rc in (130, -signal.SIGINT) and stopped < STOP_S, (rc, stopped, err[-2000:])
    assert "oat-edge: interrupted" in err
    assert os.listdir(tmp_path) == []  # no bundle, no staging directory


def test_ctrl_c_stops_bench_without_writing_results(tmp_path, child_env):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    rc, _, err, stopped = _interrupt(
        ["bench", "--checkpoint", CHECKPOINT, "--iters", "100000", "--out", str(out)],
        _after(8), child_env)
    assert rc == 130 and stopped < STOP_S, (rc, stopped, err[-2000:])
    assert not out.exists() and os.listdir(tmp_path) == []
