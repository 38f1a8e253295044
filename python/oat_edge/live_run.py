"""`oat-edge run`: a bundle driving the Meta-World simulator from a fixed-rate loop on the real clock.

Everything given on the command line is checked before the simulator takes its first step
(output paths, then every act() option through `ControlLoop`). Ctrl-C or SIGTERM stops the loop
at once; the sensor and inference threads are stopped and the records and summary of the cycles
that ran are still written, atomically. The exit status is non-zero when no inference succeeded.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading

import numpy as np

from .atomic import check_output_file, write_json
from .control import ControlLoop, demote_to_normal_priority, write_csv
from .control.policy_spec import info_field
from .control.telemetry import Telemetry
from .errors import InputError
from .sd_notify import ServiceNotifier

_PRINTED = ("cycles", "achieved_hz", "jitter_ms", "inference_ms", "tokens_hist", "overruns", "held",
            "replans_without_obs", "errors", "episodes", "successes", "interrupted", "rt_priority",
            "rt_memory", "telemetry")


class _SimPlant:
    """The simulator as the loop sees it: get_obs and send_action, safe to call from the sensor
    thread and the control thread at once (the simulator itself is not thread-safe)."""

    def __init__(self, env, seed: int):
        self.env, self.lock = env, threading.Lock()
        self.episodes = {"n": 0, "success": 0, "seed": seed}
        self.loop: ControlLoop | None = None
        env.reset(seed)

    def get_obs(self):
        with self.lock:
            return self.env.observation()

    def send(self, action) -> None:
        with self.lock:
            self.env.step(action)
            if not self.env.done:
                return
            e = self.episodes  # next episode on a fresh layout; old plans are meaningless there
            e["n"] += 1
            e["success"] += int(self.env.success)
            e["seed"] += 1
            self.env.reset(e["seed"])
        self.loop.reset_plan()


def _make_env(policy, task):
    from .sim.metaworld_env import MetaWorldEnv
    info = policy.info
    tasks = list(info_field(info, "tasks") or [])
    task = task or (tasks[0] if tasks else None)
    if task is None:
        raise InputError("the bundle declares no tasks: pass --task")
    if info_field(info, "observation") is not None:
        names = [i["name"] for i in info_field(info, "observation")["inputs"]]
        raise InputError(
            f"this bundle reads named inputs {names}: `oat-edge run` drives the simulator from its "
            f"state vector. Evaluate a camera bundle in the simulator with `oat-edge eval BUNDLE` "
            f"(frames rendered for each replan), or drive it from your cameras with "
            f"oat_edge.control.ControlLoop, its get_obs returning {{name: array}}")
    return MetaWorldEnv(task, tasks=tasks, n_obs_steps=int(info_field(info, "n_obs_steps")),
                        obs_dim=int(info_field(info, "obs_dim")))


def _live_line(loop: ControlLoop, hz: float, episodes: dict) -> str | None:
    recent = loop.records[-int(hz):]
    if not recent:
        return None
    rec = recent[-1]
    jit = [r["jitter_ms"] for r in recent if r["jitter_ms"] is not None]
    lat = [r["inference_ms"] for r in recent if r["inference_ms"] is not None]
    tok = [r["tokens_used"] for r in recent if r["tokens_used"] is not None]
    tel = "".join(f"  {k}={rec[k]:.0f}" for k in ("gpu_load_pct", "power_total_mw") if k in rec)
    return (f"cycle {rec['cycle']:6d}  jitter p99 {np.percentile(jit, 99) if jit else 0:.3f} ms  "
            f"act {np.median(lat) if lat else float('nan'):6.1f} ms  tokens "
            f"{tok[-1] if tok else '-'}  overruns {sum(r['overrun'] for r in loop.records)}  "
            f"held {sum(r['held'] for r in recent)}/{len(recent)}  episodes "
            f"{episodes['success']}/{episodes['n']}{tel}")


def _print_live(loop: ControlLoop, hz: float, episodes: dict, stop: threading.Event) -> None:
    # Printing can block (slow terminal, full pipe): it runs in its own normal-priority thread
    # so that it never delays a control cycle.
    demote_to_normal_priority()
    while not stop.wait(1.0):
        line = _live_line(loop, hz, episodes)
        try:
            if line is not None:
                print(line, flush=True)
        except OSError:  # closed terminal / pipe: keep controlling, stop printing
            return


@contextlib.contextmanager
def _signals_stop_the_loop():
    """SIGTERM (systemd, kill) stops the run like Ctrl-C does: summary written, threads stopped."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    if threading.current_thread() is not threading.main_thread():  # only there can it be set
        yield
        return
    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _signals_ignored():
    """While the results are written, a second Ctrl-C must not cut the writing short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = [(s, signal.signal(s, signal.SIG_IGN)) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        yield
    finally:
        for s, h in old:
            signal.signal(s, h)


def _drive(loop: ControlLoop, a, episodes: dict) -> bool:
    """Run the loop; True when it was interrupted. The loop's threads are stopped either way."""
    stop = threading.Event()
    if not a.quiet:
        threading.Thread(target=_print_live, args=(loop, a.hz, episodes, stop), name="oat-live",
                         daemon=True).start()
    try:
        # under systemd (deploy/oat-edge.service): READY=1 once cycling, then watchdog pings
        loop.run(a.cycles, on_cycle=ServiceNotifier.from_env().cycle)
        return False
    except KeyboardInterrupt:
        return True  # Ctrl-C is the normal way to stop a live run: still report
    finally:
        stop.set()
        with _signals_ignored():
            loop.close()


def _report(loop: ControlLoop, a, s: dict) -> int:
    with _signals_ignored():
        if a.csv:
            write_csv(loop.records, a.csv)
        if a.json:
            write_json(a.json, s)
    print(json.dumps({k: s[k] for k in _PRINTED if k in s}, indent=2))
    if s.get("chunks_used", 0) == 0:
        first = s["error_messages"][0] if s.get("error_messages") else "none recorded"
        print(f"oat-edge: error: no inference succeeded in {s['cycles']} cycles "
              f"({s['errors']} errors, first: {first}; {s['replans_without_obs']} replans without "
              f"a fresh observation): the robot was only ever held", file=sys.stderr)
        return 1
    return 0


def run(a) -> int:
    from . import Policy
    for path, flag in ((a.csv, "--csv"), (a.json, "--json")):
        if path:
            check_output_file(path, flag)
    rt_memory = None
    if a.rt_memory:  # before the Policy exists, so its sessions are allocated under the new rules
        from .realtime import prepare_realtime_memory
        rt_memory = prepare_realtime_memory()["message"]
        print(f"rt memory: {rt_memory}", file=sys.stderr)
    policy = Policy(a.bundle, device=a.device, threads=a.threads)
    plant = _SimPlant(_make_env(policy, a.task), a.seed)
    telemetry = None if a.no_telemetry else Telemetry().start()
    if telemetry is not None and not telemetry.available:
        telemetry = None
    try:
        plant.loop = loop = ControlLoop(
            policy, plant.get_obs, plant.send, hz=a.hz, n_action_steps=a.n_action_steps,
            max_tokens=a.max_tokens, latency_budget_ms=a.latency_budget_ms,
            temperature=a.temperature, top_k=a.top_k, seed=a.seed, background=not a.sync,
            telemetry=telemetry, rt_priority=a.rt_priority,
            max_obs_age_s=None if a.max_obs_age_ms is None else a.max_obs_age_ms / 1e3)
        with _signals_stop_the_loop():
            interrupted = _drive(loop, a, plant.episodes)
    finally:
        if telemetry is not None:
            telemetry.stop()
    s = loop.summary()
    s.update(episodes=plant.episodes["n"], successes=plant.episodes["success"],
             interrupted=interrupted, telemetry="jtop" if telemetry is not None else "absent",
             rt_memory=rt_memory)
    return _report(loop, a, s)
