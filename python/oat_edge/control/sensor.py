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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .error_log import ErrorLog
from .job_thread import JobThread


@dataclass(frozen=True)
class Observation:
    data: np.ndarray | dict  # an array, or {input name: array} for a bundle with named inputs
    cycle: int      # the cycle whose action this observation is the input for
    t: float        # clock time when the read started (the world is at most this old)


class ObservationCheck:
    """A reading is usable when it is a finite numeric array of the policy's input shape, or, for
    a bundle with named inputs (cameras), a dict with exactly its input names, each an array of
    its dtype and shape [n_obs_steps, ...] (frames uint8, state finite). What passes is copied,
    so the caller may reuse its buffers (a camera driver's ring) once get_obs has returned."""

    def __init__(self, shape: tuple[int, ...] | None, inputs: tuple | None = None):
        self.shape, self.inputs = shape, inputs

    def __call__(self, value):
        if self.inputs is not None:
            return self._named(value)
        return self._array(value)

    def _named(self, value) -> dict:
        names = [n for n, _, _ in self.inputs]
        if not isinstance(value, Mapping):
            raise ValueError(f"get_obs returned {type(value).__name__}, expected a dict of the bundle's "
                             f"named inputs {names}")
        if set(value) != set(names):
            missing = [n for n in names if n not in value]
            extra = sorted(str(k) for k in value if k not in names)
            raise ValueError(f"get_obs returned the keys {sorted(str(k) for k in value)}, expected {names}"
                             + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else ""))
        out = {}
        for name, dtype, shape in self.inputs:
            arr = np.asarray(value[name])
            want = f"{dtype} {list(shape)}"
            if dtype == "uint8" and arr.dtype != np.uint8:
                raise ValueError(f"get_obs[{name!r}] has dtype {arr.dtype}, expected {want} (raw camera frames)")
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"get_obs[{name!r}] has dtype {arr.dtype}, expected {want}")
            if arr.shape != shape:
                raise ValueError(f"get_obs[{name!r}] has shape {list(arr.shape)}, expected {want}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"get_obs[{name!r}] has NaN or Inf values, expected {want}")
            out[name] = np.array(arr, dtype=np.uint8 if dtype == "uint8" else np.float32, copy=True)
        return out

    def _array(self, value) -> np.ndarray:
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


def read_checked(get_obs, check: ObservationCheck, errors: ErrorLog) -> tuple[np.ndarray | dict | None, str | None]:
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
    """Reads in a daemon thread, once per cycle; the latest reading waits to be taken."""

    def __init__(self, get_obs, check: ObservationCheck, errors: ErrorLog, clock,
                 max_age_s: float):
        self.max_age_s = max_age_s
        self.stale = 0                     # readings discarded because they were too old

        def read(cycle: int) -> tuple[Observation | None, str | None]:
            t = clock()
            data, err = read_checked(get_obs, check, errors)
            return (None, err) if data is None else (Observation(data, cycle, t), None)

        self._jobs = JobThread("oat-sensor", read)

    def after_send(self, next_cycle: int) -> None:
        """Ask for the observation of `next_cycle`; ignored while a read is still running."""
        self._jobs.submit(next_cycle)

    def take(self, cycle: int, now: float, min_cycle: int = 0) -> tuple[Observation | None, str | None]:
        """The newest reading not taken yet, if it is fresh enough; else (None, why).
        Readings for cycles before `min_cycle` (the plan was reset since) are dropped."""
        obs, err = self._jobs.take() or (None, None)
        if obs is None or obs.cycle < min_cycle:
            return None, err
        if now - obs.t > self.max_age_s:
            self.stale += 1
            return None, (f"sensor: observation for cycle {obs.cycle} is {(now - obs.t) * 1e3:.1f} ms "
                          f"old (limit {self.max_age_s * 1e3:.1f} ms): discarded")
        return obs, None

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread; a get_obs that never returns is not waited for beyond `timeout`."""
        self._jobs.close(timeout)
