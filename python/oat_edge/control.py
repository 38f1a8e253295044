"""Fixed-rate control: a drift-free scheduler and a receding-horizon control loop.

`FixedRateScheduler` wakes at absolute deadlines t0 + n*period (errors never accumulate) with a
hybrid wait: OS sleep until ~0.5 ms before the deadline, then spin on the clock, because
`time.sleep` alone overshoots by 50-100 us on a general-purpose kernel.

`ControlLoop` sends one action per cycle. The actions come from an `ActionQueue` filled with the
first `n_action_steps` of each predicted chunk. With `background=True` a worker thread computes
the next chunk from the latest observation while the current one executes; the new chunk is
aligned by the number of cycles that elapsed since its observation was read. The actuator
callback is never blocked by inference: when the next chunk is late the loop keeps executing the
queued one and, when the queue runs dry, holds the last safe action and counts an overrun.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .action_queue import ActionQueue
from .safety import SafetyFilter, Watchdog

# ---------------------------------------------------------------------------- scheduling


class FixedRateScheduler:
    """Wakes the caller at t0 + n*period. Late wake-ups do not shift later deadlines."""

    def __init__(self, hz: float, clock=time.perf_counter, sleep=time.sleep, spin_s: float = 5e-4):
        if not (isinstance(hz, (int, float)) and math.isfinite(hz) and hz > 0):
            raise ValueError(f"hz must be a positive finite number, got {hz!r}")
        if spin_s < 0:
            raise ValueError(f"spin_s must be >= 0, got {spin_s}")
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self._clock, self._sleep, self._spin = clock, sleep, spin_s
        self.t0: float | None = None
        self.index = -1          # index of the deadline last waited for
        self.skipped = 0         # deadlines dropped because we were more than a period late

    def start(self) -> None:
        self.t0 = self._clock()
        self.index = -1
        self.skipped = 0

    def deadline(self, n: int) -> float:
        return self.t0 + n * self.period

    def now(self) -> float:
        return self._clock()

    def wait(self) -> tuple[int, float, float]:
        """Wait for the next deadline; return (index, deadline, wake time).

        If we are already more than one full period past the next deadline, the missed
        deadlines are skipped (counted) instead of being replayed back to back: a burst of
        late actuator commands is worse than a gap.
        """
        if self.t0 is None:
            self.start()
        n = self.index + 1
        now = self._clock()
        behind = int((now - self.deadline(n)) // self.period)
        if behind >= 1:
            self.skipped += behind
            n += behind
        target = self.deadline(n)
        remaining = target - now
        if remaining > self._spin:
            self._sleep(remaining - self._spin)
        while True:
            now = self._clock()
            if now >= target:
                break
        self.index = n
        return n, target, now


class VirtualScheduler:
    """Same interface on a virtual clock: no waiting, wake time == deadline (simulation)."""

    def __init__(self, hz: float):
        if not (isinstance(hz, (int, float)) and math.isfinite(hz) and hz > 0):
            raise ValueError(f"hz must be a positive finite number, got {hz!r}")
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self.t0 = 0.0
        self.index = -1
        self.skipped = 0

    def start(self) -> None:
        self.index = -1

    def now(self) -> float:
        return self.t0 + (self.index + 1) * self.period

    def wait(self) -> tuple[int, float, float]:
        self.index += 1
        t = self.t0 + self.index * self.period
        return self.index, t, t


def set_realtime_priority(priority: int) -> tuple[bool, str]:
    """Best effort: put the *calling thread* under SCHED_FIFO at `priority` (1-99).

    On a loaded Linux machine this is what keeps period jitter under 1 ms: a SCHED_OTHER thread
    waking from sleep can wait milliseconds for CPU-bound neighbours. Needs root or
    CAP_SYS_NICE; returns (applied, message) instead of raising.
    """
    if not (isinstance(priority, int) and 1 <= priority <= 99):
        raise ValueError(f"real-time priority must be an int in 1..99, got {priority!r}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as exc:
        return False, f"real-time priority not available ({exc}); normal priority"
    return True, f"SCHED_FIFO priority {priority}"


def _demote_to_normal_priority() -> None:
    """Inference must never outrank the control thread (same-priority FIFO threads do not
    preempt each other), so a worker that inherited SCHED_FIFO drops back to SCHED_OTHER."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


# ---------------------------------------------------------------------------- inference


@dataclass
class InferenceResult:
    cycle: int                   # cycle whose observation the chunk was computed from
    chunk: np.ndarray | None
    latency_ms: float
    tokens_used: int | None
    error: str | None
    stats: dict = field(default_factory=dict)


def _call_act(policy, watchdog: Watchdog, obs, cycle: int, act_kwargs: dict) -> InferenceResult:
    t = time.perf_counter()
    out, err = watchdog.call(policy.act, obs, return_stats=True, **act_kwargs)
    latency_ms = (time.perf_counter() - t) * 1e3
    chunk, stats = None, {}
    if err is None:
        chunk, stats = out if isinstance(out, tuple) else (out, {})
        stats = dict(stats or {})
        try:
            chunk = np.asarray(chunk, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            chunk, err = None, f"{type(exc).__name__}: {exc}"
    tokens = stats.get("tokens_used")
    return InferenceResult(cycle, chunk, latency_ms, None if tokens is None else int(tokens),
                           err, stats)


class InlineWorker:
    """Runs act in the caller's thread.

    `virtual_period=None`: synchronous control (the chunk is usable in the cycle that asked
    for it). With a period: simulated background inference on a virtual clock: the chunk
    becomes usable max(1, ceil(latency / period)) cycles later, as it would with a real worker
    thread, while the latency itself is measured for real.
    """

    def __init__(self, policy, watchdog: Watchdog, virtual_period: float | None = None):
        self._policy, self._watchdog, self._period = policy, watchdog, virtual_period
        self._pending: tuple[int, InferenceResult] | None = None

    @property
    def idle(self) -> bool:
        return self._pending is None

    def submit(self, obs, cycle: int, act_kwargs: dict) -> None:
        res = _call_act(self._policy, self._watchdog, obs, cycle, act_kwargs)
        delay = 0 if self._period is None else max(1, math.ceil(res.latency_ms / 1e3 / self._period))
        self._pending = (cycle + delay, res)

    def poll(self, cycle: int) -> InferenceResult | None:
        if self._pending is not None and cycle >= self._pending[0]:
            res, self._pending = self._pending[1], None
            return res
        return None

    def close(self) -> None:
        self._pending = None


class ThreadWorker:
    """One background thread computing one chunk at a time."""

    def __init__(self, policy, watchdog: Watchdog):
        self._policy, self._watchdog = policy, watchdog
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._job = None
        self._result: InferenceResult | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="oat-inference", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._busy and self._result is None

    def submit(self, obs, cycle: int, act_kwargs: dict) -> None:
        with self._lock:
            if self._busy or self._result is not None:
                raise RuntimeError("inference worker is busy")
            self._busy = True
            self._job = (np.array(obs, copy=True), cycle, act_kwargs)
        self._wake.set()

    def poll(self, cycle: int) -> InferenceResult | None:
        with self._lock:
            res, self._result = self._result, None
            return res

    def _run(self) -> None:
        _demote_to_normal_priority()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                job, self._job = self._job, None
            if job is None:
                continue
            res = _call_act(self._policy, self._watchdog, job[0], job[1], job[2])
            with self._lock:
                self._result = res
                self._busy = False

    def close(self, timeout: float = 5.0) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)


# ---------------------------------------------------------------------------- statistics


def percentiles(values, qs=(50, 90, 99)) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {}
    out = {f"p{q}": float(np.percentile(v, q)) for q in qs}
    out.update(mean=float(v.mean()), max=float(v.max()), n=int(v.size))
    return out


def summarize(records: list[dict], hz: float, extra: dict | None = None) -> dict:
    """Loop summary from per-cycle records (see ControlLoop.step for the fields)."""
    periods = [r["period_ms"] for r in records if r["period_ms"] is not None]
    tokens: dict[str, int] = {}
    for r in records:
        if r["tokens_used"] is not None:
            tokens[str(r["tokens_used"])] = tokens.get(str(r["tokens_used"]), 0) + 1
    duration = records[-1]["t"] - records[0]["t"] if len(records) > 1 else 0.0
    out = {
        "cycles": len(records),
        "hz": hz,
        "achieved_hz": (len(records) - 1) / duration if duration > 0 else None,
        "period_ms": percentiles(periods),
        "jitter_ms": percentiles([r["jitter_ms"] for r in records]),
        "lateness_ms": percentiles([r["lateness_ms"] for r in records]),
        "work_ms": percentiles([r["work_ms"] for r in records]),
        "inference_ms": percentiles([r["inference_ms"] for r in records]),
        "tokens_hist": dict(sorted(tokens.items(), key=lambda kv: int(kv[0]))),
        "overruns": sum(1 for r in records if r["overrun"]),
        "held": sum(1 for r in records if r["held"]),
        "replans": sum(1 for r in records if r["inference_ms"] is not None),
    }
    out.update(extra or {})
    return out


def write_csv(records: list[dict], path) -> None:
    keys: list[str] = []
    for r in records:  # telemetry fields may appear only in some records
        keys.extend(k for k in r if k not in keys)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


def write_json(obj, path) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------- the loop


def _info_bounds(policy):
    """Action bounds declared by the bundle: policy.info or its manifest's normalization."""
    info = getattr(policy, "info", {}) or {}
    low, high = info.get("action_low"), info.get("action_high")
    if low is None or high is None:
        norm = (info.get("manifest") or {}).get("normalization") or {}
        low, high = norm.get("action_low"), norm.get("action_high")
    return (low, high) if low is not None and high is not None else (None, None)


class ControlLoop:
    """One action per cycle at `hz`, receding-horizon replanning, never-blocking actuation.

    policy: object with `.info` (horizon, action_dim, n_action_steps, ...) and
        `.act(obs, return_stats=True, ...) -> (chunk [H, D], stats)` (oat_edge.Policy API).
    get_obs(): the policy input for a replan ([n_obs_steps, obs_dim]); called only when a
        replan starts.
    send_action(action): actuator callback, called exactly once per cycle with a finite action
        inside [action_low, action_high].
    max_tokens / latency_budget_ms / temperature / top_k: forwarded to act (anytime inference:
        the policy stops decoding when the budget is spent). seed: replan i uses seed + i.
    background: compute chunks in a worker thread (True) or inline in the cycle (False).
    virtual_time: run on a virtual clock (simulation): no sleeping; with background=True the
        inference latency, measured for real, decides how many cycles later a chunk lands.
    rt_priority: if set, run() puts its calling thread under SCHED_FIFO at this priority
        (best effort, see set_realtime_priority; the inference worker stays SCHED_OTHER).
    """

    def __init__(self, policy, get_obs, send_action, hz: float = 50.0, n_action_steps=None,
                 max_tokens=None, latency_budget_ms=None, background: bool = True,
                 temperature=None, top_k=None, seed=None, action_low=None, action_high=None,
                 telemetry=None, virtual_time: bool = False, scheduler=None,
                 rt_priority: int | None = None):
        info = getattr(policy, "info", None)
        if not isinstance(info, dict):
            raise TypeError("policy must expose an `info` dict (oat_edge.Policy API)")
        try:
            horizon, action_dim = int(info["horizon"]), int(info["action_dim"])
        except KeyError as exc:
            raise ValueError(f"policy.info lacks {exc.args[0]!r}") from None
        if n_action_steps is None:
            n_action_steps = int(info.get("n_action_steps", horizon))
        if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens >= 1):
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        if latency_budget_ms is not None and not latency_budget_ms > 0:
            raise ValueError(f"latency_budget_ms must be > 0, got {latency_budget_ms!r}")
        if action_low is None or action_high is None:
            action_low, action_high = _info_bounds(policy)
        if action_low is None:
            raise ValueError("action bounds unknown: policy.info has no action_low/action_high; "
                             "pass action_low= and action_high=")
        self.policy, self.get_obs, self.send_action = policy, get_obs, send_action
        self.queue = ActionQueue(horizon, action_dim, n_action_steps)
        self.safety = SafetyFilter(action_low, action_high)
        if self.safety.action_dim != action_dim:
            raise ValueError(f"action bounds have {self.safety.action_dim} values, "
                             f"policy action_dim is {action_dim}")
        self.watchdog = Watchdog()
        self.telemetry = telemetry
        self.background = background
        self.virtual_time = virtual_time
        self.scheduler = scheduler or (VirtualScheduler(hz) if virtual_time
                                       else FixedRateScheduler(hz))
        self.hz = self.scheduler.hz
        self._act_kwargs = {k: v for k, v in dict(max_tokens=max_tokens,
                            latency_budget_ms=latency_budget_ms, temperature=temperature,
                            top_k=top_k).items() if v is not None}
        self._seed = seed
        if not background:
            self.worker = InlineWorker(policy, self.watchdog)
        elif virtual_time:
            self.worker = InlineWorker(policy, self.watchdog, virtual_period=self.scheduler.period)
        else:
            self.worker = ThreadWorker(policy, self.watchdog)
        if rt_priority is not None and not (isinstance(rt_priority, int) and 1 <= rt_priority <= 99):
            raise ValueError(f"rt_priority must be an int in 1..99, got {rt_priority!r}")
        self.rt_priority = rt_priority
        self.rt_status: str | None = None
        self.records: list[dict] = []
        self.stale_chunks = 0
        self._replans = 0
        self._recent_lat: list[float] = []
        self._have_chunk = False
        self._discard_before = 0  # chunks from observations older than this cycle are void
        self._prev_wake: float | None = None
        self._started = False

    # -- replan trigger
    def _lead(self) -> int:
        """Queued actions left when the next replan starts: 0 in sync mode (replan when
        empty); in background mode enough cycles to cover the recent worst latency."""
        if not self.background or not self._recent_lat:
            return 0
        cycles = math.ceil(max(self._recent_lat) / 1e3 * self.hz)
        return min(self.queue.n_action_steps - 1, cycles)

    def _submit(self, cycle: int) -> str | None:
        kwargs = dict(self._act_kwargs)
        if self._seed is not None:
            kwargs["seed"] = self._seed + self._replans
        self._replans += 1
        obs, err = self.watchdog.call(self.get_obs)
        if err is None:
            self.worker.submit(obs, cycle, kwargs)
        return err

    def _collect(self, cycle: int, rec: dict) -> None:
        res = self.worker.poll(cycle)
        if res is None:
            return
        rec["inference_ms"] = res.latency_ms
        rec["tokens_used"] = res.tokens_used
        self._recent_lat = (self._recent_lat + [res.latency_ms])[-5:]
        if res.error is not None:
            rec["error"] = res.error
            return
        if res.cycle < self._discard_before:
            self.stale_chunks += 1
            return
        if res.chunk.shape != (self.queue.horizon, self.queue.action_dim):
            self.watchdog.errors += 1
            rec["error"] = (f"ValueError: act returned shape {res.chunk.shape}, expected "
                            f"{(self.queue.horizon, self.queue.action_dim)}")
            return
        if not self.safety.chunk_ok(res.chunk):
            rec["error"] = "non-finite action chunk rejected"
            return
        if self.queue.load(res.chunk, elapsed=cycle - res.cycle) == 0:
            self.stale_chunks += 1
        else:
            self._have_chunk = True

    def step(self) -> dict:
        """Wait for the next deadline and run one cycle. Returns the cycle record."""
        if not self._started:
            self.scheduler.start()
            self._started = True
        idx, deadline, wake = self.scheduler.wait()
        rec = {"cycle": idx, "t": wake - self.scheduler.t0,
               "period_ms": None if self._prev_wake is None else (wake - self._prev_wake) * 1e3,
               "lateness_ms": (wake - deadline) * 1e3,
               "inference_ms": None, "tokens_used": None, "error": None}
        rec["jitter_ms"] = (None if rec["period_ms"] is None
                            else abs(rec["period_ms"] - self.scheduler.period * 1e3))
        self._prev_wake = wake
        self._collect(idx, rec)
        if self.worker.idle and len(self.queue) <= self._lead():
            rec["error"] = self._submit(idx)
            if not self.background:
                self._collect(idx, rec)
        raw = self.queue.pop()
        action, held = self.safety.filter(raw)
        self.send_action(action)
        rec["overrun"] = raw is None and self._have_chunk
        rec["held"] = held
        rec["queue_len"] = len(self.queue)
        rec["work_ms"] = (self.scheduler.now() - wake) * 1e3
        if self.telemetry is not None:
            rec.update(self.telemetry.latest())
        self.records.append(rec)
        return rec

    def reset_plan(self) -> None:
        """Forget the current plan (e.g. after an episode reset): the queue is cleared and a
        chunk still in flight, computed from the old world, is discarded when it lands."""
        self.queue.clear()
        self._have_chunk = False
        self._discard_before = self.scheduler.index + 1

    def run(self, cycles: int, until=None, csv_path=None, json_path=None, on_cycle=None) -> dict:
        """Run `cycles` cycles (or until `until()` is true after a cycle); return the summary."""
        if not (isinstance(cycles, int) and cycles >= 1):
            raise ValueError(f"cycles must be an int >= 1, got {cycles!r}")
        if self.rt_priority is not None and self.rt_status is None:
            self.rt_status = set_realtime_priority(self.rt_priority)[1]
        for _ in range(cycles):
            rec = self.step()
            if on_cycle is not None:
                on_cycle(rec)
            if until is not None and until():
                break
        summary = self.summary()
        if csv_path is not None:
            write_csv(self.records, csv_path)
        if json_path is not None:
            write_json(summary, json_path)
        return summary

    def summary(self) -> dict:
        extra = {"deadline_skips": self.scheduler.skipped, "stale_chunks": self.stale_chunks,
                 "errors": self.watchdog.errors, "error_messages": list(self.watchdog.messages),
                 "background": self.background, "virtual_time": self.virtual_time,
                 "n_action_steps": self.queue.n_action_steps, "rt_priority": self.rt_status}
        extra.update(self.safety.counts())
        return summarize(self.records, self.hz, extra) if self.records else {"cycles": 0, **extra}

    def close(self) -> None:
        self.worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
