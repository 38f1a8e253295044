"""Inference workers: who runs act() for the loop, and when its chunk becomes usable.

Both take an observation stamped with the cycle it belongs to and hand back an
`InferenceResult` for that cycle; the loop aligns the chunk by the cycles elapsed since.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .error_log import ErrorLog
from .job_thread import JobThread


@dataclass
class InferenceResult:
    cycle: int                   # cycle whose observation the chunk was computed from
    chunk: np.ndarray | None
    latency_ms: float
    tokens_used: int | None
    error: str | None
    stats: dict = field(default_factory=dict)


def call_act(policy, errors: ErrorLog, obs, cycle: int, act_kwargs: dict) -> InferenceResult:
    """One act() call, timed; any exception becomes a recorded error, never a raise."""
    t = time.perf_counter()
    out, err = errors.call("policy", policy.act, obs, return_stats=True, **act_kwargs)
    latency_ms = (time.perf_counter() - t) * 1e3
    chunk, stats = None, {}
    if err is None:
        chunk, stats = out if isinstance(out, tuple) else (out, {})
        stats = dict(stats or {})
        try:
            chunk = np.asarray(chunk, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            chunk, err = None, errors.record("policy", f"act returned no numeric array: "
                                                       f"{type(exc).__name__}: {exc}")
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

    def __init__(self, policy, errors: ErrorLog, virtual_period: float | None = None):
        self._policy, self._errors, self._period = policy, errors, virtual_period
        self._pending: tuple[int, InferenceResult] | None = None

    @property
    def idle(self) -> bool:
        return self._pending is None

    def submit(self, obs, cycle: int, act_kwargs: dict) -> None:
        res = call_act(self._policy, self._errors, obs, cycle, act_kwargs)
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
    """Inference in one background daemon thread, one chunk at a time, at normal priority."""

    def __init__(self, policy, errors: ErrorLog):
        self._jobs = JobThread("oat-inference", lambda job: call_act(policy, errors, *job))

    @property
    def idle(self) -> bool:
        return self._jobs.idle

    def submit(self, obs, cycle: int, act_kwargs: dict) -> None:
        obs = ({k: np.array(v, copy=True) for k, v in obs.items()} if isinstance(obs, dict)
               else np.array(obs, copy=True))
        if not (self._jobs.idle and self._jobs.submit((obs, cycle, act_kwargs))):
            raise RuntimeError("inference worker is busy")

    def poll(self, cycle: int) -> InferenceResult | None:
        return self._jobs.take()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; waits at most `timeout` for an act() in progress to return."""
        self._jobs.close(timeout)
