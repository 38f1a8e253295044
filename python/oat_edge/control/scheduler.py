"""When each control cycle runs: absolute deadlines on the real clock, or a virtual clock.

`FixedRateScheduler` wakes at t0 + n*period, so errors never accumulate, with a hybrid wait: OS
sleep until ~0.5 ms before the deadline, then spin on the clock, because `time.sleep` alone
overshoots by 50-100 us on a general-purpose kernel. `VirtualScheduler` has the same interface
without waiting (simulation).
"""

from __future__ import annotations

import math
import time

from ..errors import InputError


def check_rate(hz) -> float:
    """The control rate as a float, or InputError (ValueError) saying what a rate must be."""
    if isinstance(hz, bool) or not (isinstance(hz, (int, float)) and math.isfinite(hz) and hz > 0):
        raise InputError(f"hz: expected a positive finite number of cycles per second, got {hz!r}")
    return float(hz)


class FixedRateScheduler:
    """Wakes the caller at t0 + n*period. Late wake-ups do not shift later deadlines."""

    def __init__(self, hz: float, clock=time.perf_counter, sleep=time.sleep, spin_s: float = 5e-4):
        self.hz = check_rate(hz)
        if not spin_s >= 0:
            raise InputError(f"spin_s: expected a number of seconds >= 0, got {spin_s!r}")
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
        self.hz = check_rate(hz)
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
