"""Where the loop's observations come from, kept off the actuator's path.

On the real clock a `SensorThread` calls `get_obs` once per cycle, right after the action is
sent (the state the next cycle acts on), and keeps the latest good reading with the cycle it is
for and the time the read started. A replan takes that reading only if it is new and younger
than the staleness limit, so a read that stalls, raises or returns garbage never delays
`send_action`: the loop keeps executing its queue and then holds the last safe action.
On a virtual clock (simulation) an `InlineSensor` reads in the caller's thread when a replan
starts, so a simulated episode stays deterministic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .error_log import ErrorLog
from .priority import demote_to_normal_priority


@dataclass(frozen=True)
class Observation:
    data: np.ndarray
    cycle: int      # the cycle whose action this observation is the input for
    t: float        # clock time when the read started (the world is at most this old)


class ObservationCheck:
    """A reading is usable when it is a finite numeric array of the policy's input shape."""

    def __init__(self, shape: tuple[int, ...] | None):
        self.shape = shape

    def __call__(self, value) -> np.ndarray:
        want = f"a finite numeric array of shape {self.shape}" if self.shape else "a finite numeric array"
        try:
            arr = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - ragged lists, odd objects
            raise ValueError(f"get_obs returned {type(value).__name__} ({exc}), expected {want}") from None
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"get_obs returned {type(value).__name__} of dtype {arr.dtype}, expected {want}")
        if self.shape is not None and arr.shape != self.shape:
            raise ValueError(f"get_obs returned shape {arr.shape}, expected {want}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"get_obs returned NaN or Inf values, expected {want}")
        return np.array(arr, dtype=arr.dtype if arr.dtype.kind == "f" else np.float64, copy=True)


def read_checked(get_obs, check: ObservationCheck, errors: ErrorLog) -> tuple[np.ndarray | None, str | None]:
    value, err = errors.call("sensor", get_obs)
    if err is not None:
        return None, err
    try:
        return check(value), None
    except ValueError as exc:
        return None, errors.record("sensor", str(exc))


class InlineSensor:
    """Reads when a replan starts, in the caller's thread (virtual clock)."""

    def __init__(self, get_obs, check: ObservationCheck, errors: ErrorLog):
        self._get_obs, self._check, self._errors = get_obs, check, errors

    def after_send(self, next_cycle: int) -> None:
        pass

    def take(self, cycle: int, now: float, min_cycle: int = 0) -> tuple[Observation | None, str | None]:
        data, err = read_checked(self._get_obs, self._check, self._errors)
        return (None, err) if data is None else (Observation(data, cycle, now), None)

    def close(self) -> None:
        pass


class SensorThread:
    """One daemon thread reading once per cycle; the latest good reading waits to be taken."""

    def __init__(self, get_obs, check: ObservationCheck, errors: ErrorLog, clock,
                 max_age_s: float):
        self._get_obs, self._check, self._errors, self._clock = get_obs, check, errors, clock
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._request: int | None = None
        self._busy = False
        self._closed = False
        self._latest: Observation | None = None
        self._error: str | None = None     # the last failure since the last take()
        self.stale = 0                     # readings discarded because they were too old
        self._thread = threading.Thread(target=self._run, name="oat-sensor", daemon=True)
        self._thread.start()

    def after_send(self, next_cycle: int) -> None:
        """Ask for the observation of `next_cycle`; ignored while a read is still running."""
        with self._lock:
            if self._busy or self._closed:
                return
            self._busy, self._request = True, next_cycle
        self._wake.set()

    def take(self, cycle: int, now: float, min_cycle: int = 0) -> tuple[Observation | None, str | None]:
        """The newest reading not taken yet, if it is fresh enough; else (None, why).
        Readings for cycles before `min_cycle` (the plan was reset since) are dropped."""
        with self._lock:
            obs, self._latest = self._latest, None
            err, self._error = self._error, None
        if obs is not None and obs.cycle < min_cycle:
            return None, err
        if obs is not None and now - obs.t > self.max_age_s:
            self.stale += 1
            return None, (f"sensor: observation for cycle {obs.cycle} is {(now - obs.t) * 1e3:.1f} ms "
                          f"old (limit {self.max_age_s * 1e3:.1f} ms): discarded")
        return obs, err

    def _run(self) -> None:
        demote_to_normal_priority()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                cycle, self._request = self._request, None
            if cycle is None:
                continue
            t = self._clock()
            data, err = read_checked(self._get_obs, self._check, self._errors)
            with self._lock:
                if data is not None:
                    self._latest = Observation(data, cycle, t)
                else:
                    self._error = err
                self._busy = False

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread. A get_obs that never returns keeps its (daemon) thread blocked:
        we wait at most `timeout` for it and move on."""
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
