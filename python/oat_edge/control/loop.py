"""The receding-horizon control loop: one action per cycle, whatever the policy or sensor does.

`ControlLoop` sends one action per cycle. The actions come from an `ActionQueue` filled with the
first `n_action_steps` of each predicted chunk. With `background=True` a worker thread computes
the next chunk from the latest observation while the current one executes; the new chunk is
aligned by the number of cycles that elapsed since its observation was read. The actuator
callback is never blocked by inference or by the sensor: when the next chunk is late, or no
fresh observation exists, the loop keeps executing the queued chunk and, when the queue runs
dry, holds the last safe action and counts it.
"""

from __future__ import annotations

import math
import weakref

from ..errors import InputError
from .action_queue import ActionQueue
from .error_log import ErrorLog
from .policy_spec import PolicySpec, check_act_options, info_bounds
from .priority import check_priority, set_realtime_priority
from .records import write_csv
from .safety import SafetyFilter
from .scheduler import FixedRateScheduler, VirtualScheduler, check_rate
from .sensor import InlineSensor, ObservationCheck, SensorThread
from .statistics import summarize
from .workers import InlineWorker, ThreadWorker


def _close_parts(*parts) -> None:
    # A weakref finalizer: must not reference the loop, or the loop would never be collected.
    for p in parts:
        p.close()


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return value


def _check_age(max_obs_age_s, period: float) -> float:
    """Default: two control periods, so one slow read is tolerated and a stalled one is not."""
    if max_obs_age_s is None:
        return 2.0 * period
    if isinstance(max_obs_age_s, bool) or not (isinstance(max_obs_age_s, (int, float))
                                               and math.isfinite(max_obs_age_s) and max_obs_age_s > 0):
        raise InputError(f"max_obs_age_s: expected a number of seconds > 0 (None = two control "
                         f"periods), got {max_obs_age_s!r}")
    return float(max_obs_age_s)


class ControlLoop:
    """One action per cycle at `hz`, receding-horizon replanning, never-blocking actuation.

    policy: object with `.info` (horizon, action_dim, n_action_steps, n_obs_steps, obs_dim...)
        and `.act(obs, return_stats=True, ...) -> (chunk [H, D], stats)` (oat_edge.Policy API);
        `.check_options(...)` when it has one.
    get_obs(): the policy input ([n_obs_steps, obs_dim]; for a camera bundle the dict act() takes,
        {"observation.state": [n_obs_steps, D], "observation.images.<cam>": uint8 [n_obs_steps,
        H, W, 3], ...}, copied once read). On the real clock it runs in a sensor
        thread once per cycle, right after send_action; on a virtual clock, inline when a replan
        starts. A reading that raises, is not finite or has the wrong shape is an error (counted)
        and is never planned from.
    send_action(action): actuator callback, called exactly once per cycle with a finite action
        inside [action_low, action_high].
    max_tokens / latency_budget_ms / temperature / top_k / seed: forwarded to act (anytime
        inference: the policy stops decoding when the budget is spent); replan i uses seed + i.
        Checked at construction: an option act() would refuse raises the same InputError here.
    background: compute chunks in a worker thread (True) or inline in the cycle (False).
    virtual_time: run on a virtual clock (simulation): no sleeping; with background=True the
        inference latency, measured for real, decides how many cycles later a chunk lands.
    max_obs_age_s: real clock only: an observation older than this (from the start of its read)
        is not planned from (default two periods), so a stalled sensor leads to a hold.
    rt_priority: if set, run() puts its calling thread under SCHED_FIFO at this priority
        (best effort, see set_realtime_priority; inference and sensor threads stay SCHED_OTHER).
    A loop owns threads: close() it (or use `with`); one dropped without close() stops its
    threads when it is garbage-collected. A closed loop refuses to run.
    """

    def __init__(self, policy, get_obs, send_action, hz: float = 50.0, n_action_steps=None,
                 max_tokens=None, latency_budget_ms=None, background: bool = True,
                 temperature=None, top_k=None, seed=None, action_low=None, action_high=None,
                 telemetry=None, virtual_time: bool = False, scheduler=None,
                 rt_priority: int | None = None, max_obs_age_s: float | None = None):
        # Everything is checked before the first thread exists: a bad option leaks nothing.
        spec = PolicySpec.of(policy)
        for name, fn in (("get_obs", get_obs), ("send_action", send_action)):
            if not callable(fn):
                raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
        self.background = _check_flag("background", background)
        self.virtual_time = _check_flag("virtual_time", virtual_time)
        self.scheduler = scheduler or (VirtualScheduler(hz) if virtual_time
                                       else FixedRateScheduler(hz))
        self.hz = check_rate(self.scheduler.hz)
        self.max_obs_age_s = _check_age(max_obs_age_s, self.scheduler.period)
        self.rt_priority = None if rt_priority is None else check_priority(rt_priority)
        steps = spec.check_n_action_steps(spec.n_action_steps if n_action_steps is None
                                          else n_action_steps)
        self._act_kwargs = {k: v for k, v in dict(max_tokens=max_tokens,
                            latency_budget_ms=latency_budget_ms, temperature=temperature,
                            top_k=top_k).items() if v is not None}
        check_act_options(policy, spec, dict(self._act_kwargs, seed=seed))
        self.safety = self._safety_filter(spec, action_low, action_high, policy)
        self.policy, self.send_action, self.telemetry = policy, send_action, telemetry
        self.queue = ActionQueue(spec.horizon, spec.action_dim, steps)
        self.errors = ErrorLog()
        self._seed = seed
        self._init_state()
        self.sensor, self.worker = self._start_parts(policy, get_obs, spec)
        self._finalizer = weakref.finalize(self, _close_parts, self.worker, self.sensor)

    @staticmethod
    def _safety_filter(spec: PolicySpec, low, high, policy) -> SafetyFilter:
        if low is None or high is None:
            low, high = info_bounds(policy)
        if low is None:
            raise InputError("action bounds unknown: policy.info has no action_low/action_high; "
                             "pass action_low= and action_high=")
        safety = SafetyFilter(low, high)
        if safety.action_dim != spec.action_dim:
            raise InputError(f"action bounds have {safety.action_dim} values, expected "
                             f"action_dim = {spec.action_dim} of the policy")
        return safety

    def _init_state(self) -> None:
        self.rt_status: str | None = None
        self.records: list[dict] = []
        self.stale_chunks = 0
        self.chunks_used = 0
        self._replans = 0
        self._recent_lat: list[float] = []
        self._have_chunk = False
        self._discard_before = 0  # chunks from observations older than this cycle are void
        self._prev_wake: float | None = None
        self._started = False
        self._closed = False

    def _start_parts(self, policy, get_obs, spec: PolicySpec):
        check = ObservationCheck(spec.obs_shape, spec.inputs)
        if self.virtual_time:
            sensor = InlineSensor(get_obs, check, self.errors)
        else:
            sensor = SensorThread(get_obs, check, self.errors, self.scheduler.now,
                                  self.max_obs_age_s)
        if not self.background:
            worker = InlineWorker(policy, self.errors)
        elif self.virtual_time:
            worker = InlineWorker(policy, self.errors, virtual_period=self.scheduler.period)
        else:
            try:
                worker = ThreadWorker(policy, self.errors)
            except BaseException:
                sensor.close()
                raise
        return sensor, worker

    # -- replan trigger
    def replan_lead(self) -> int:
        """Queued actions left when the next replan starts: 0 in sync mode (replan when
        empty); in background mode enough cycles to cover the recent worst latency."""
        if not self.background or not self._recent_lat:
            return 0
        cycles = math.ceil(max(self._recent_lat) / 1e3 * self.hz)
        return min(self.queue.n_action_steps - 1, cycles)

    def _replan(self, cycle: int, rec: dict) -> None:
        obs, err = self.sensor.take(cycle, self.scheduler.now(), self._discard_before)
        if err is not None:
            rec["error"] = err
        if obs is None:
            rec["obs_missing"] = True
            return
        kwargs = dict(self._act_kwargs)
        if self._seed is not None:
            kwargs["seed"] = self._seed + self._replans
        self._replans += 1
        self.worker.submit(obs.data, obs.cycle, kwargs)

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
        want = (self.queue.horizon, self.queue.action_dim)
        if res.chunk.shape != want:
            rec["error"] = self.errors.record(
                "policy", f"act returned shape {res.chunk.shape}, expected {want}")
            return
        if not self.safety.chunk_ok(res.chunk):
            rec["error"] = self.errors.record("policy", "non-finite action chunk rejected")
            return
        if self.queue.load(res.chunk, elapsed=max(0, cycle - res.cycle)) == 0:
            self.stale_chunks += 1
        else:
            self._have_chunk = True
            self.chunks_used += 1

    def _begin(self) -> None:
        if self._closed:
            raise RuntimeError("this ControlLoop is closed (close() was called or its with-block "
                               "ended): create a new ControlLoop to run again")
        if not self._started:
            self.scheduler.start()
            self._started = True
            self.sensor.after_send(0)  # the first cycle's observation

    def step(self) -> dict:
        """Wait for the next deadline and run one cycle. Returns the cycle record."""
        self._begin()
        idx, deadline, wake = self.scheduler.wait()
        rec = {"cycle": idx, "t": wake - self.scheduler.t0,
               "period_ms": None if self._prev_wake is None else (wake - self._prev_wake) * 1e3,
               "lateness_ms": (wake - deadline) * 1e3,
               "inference_ms": None, "tokens_used": None, "error": None, "obs_missing": False}
        rec["jitter_ms"] = (None if rec["period_ms"] is None
                            else abs(rec["period_ms"] - self.scheduler.period * 1e3))
        self._prev_wake = wake
        self._collect(idx, rec)
        if self.worker.idle and len(self.queue) <= self.replan_lead():
            self._replan(idx, rec)
            if not self.background:
                self._collect(idx, rec)
        raw = self.queue.pop()
        action, held = self.safety.filter(raw)
        self.send_action(action)
        self.sensor.after_send(idx + 1)
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
        """Run `cycles` cycles (or until `until()` is true after a cycle); return the summary.
        csv_path / json_path: written atomically when the run ends, also when it is interrupted."""
        if isinstance(cycles, bool) or not (isinstance(cycles, int) and cycles >= 1):
            raise InputError(f"cycles: expected an int >= 1, got {cycles!r}")
        self._begin()
        if self.rt_priority is not None and self.rt_status is None:
            self.rt_status = set_realtime_priority(self.rt_priority)[1]
        try:
            for _ in range(cycles):
                rec = self.step()
                if on_cycle is not None:
                    on_cycle(rec)
                if until is not None and until():
                    break
        finally:
            self.write(csv_path, json_path)
        return self.summary()

    def write(self, csv_path=None, json_path=None) -> None:
        """Write the records (CSV) and the summary (JSON) of the cycles run so far, atomically."""
        from ..atomic import write_json
        if csv_path is not None:
            write_csv(self.records, csv_path)
        if json_path is not None:
            write_json(json_path, self.summary())

    def summary(self) -> dict:
        extra = {"deadline_skips": self.scheduler.skipped, "stale_chunks": self.stale_chunks,
                 "chunks_used": self.chunks_used,
                 "stale_obs": getattr(self.sensor, "stale", 0),
                 **self.errors.summary(),
                 "background": self.background, "virtual_time": self.virtual_time,
                 "n_action_steps": self.queue.n_action_steps, "rt_priority": self.rt_status}
        extra.update(self.safety.counts())
        return summarize(self.records, self.hz, extra) if self.records else {"cycles": 0, **extra}

    def close(self) -> None:
        """Stop the sensor and inference threads (idempotent)."""
        self._closed = True
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
