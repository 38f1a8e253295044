"""Thread scheduling classes: the control thread may run real-time, inference never does."""

from __future__ import annotations

import os

from ..errors import InputError


def set_realtime_priority(priority: int) -> tuple[bool, str]:
    """Best effort: put the *calling thread* under SCHED_FIFO at `priority` (1-99).

    On a loaded Linux machine this is what keeps period jitter under 1 ms: a SCHED_OTHER thread
    waking from sleep can wait milliseconds for CPU-bound neighbours. Needs root or
    CAP_SYS_NICE; returns (applied, message) instead of raising.
    """
    check_priority(priority)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as exc:
        return False, f"real-time priority not available ({exc}); normal priority"
    return True, f"SCHED_FIFO priority {priority}"


def check_priority(priority) -> int:
    if isinstance(priority, bool) or not (isinstance(priority, int) and 1 <= priority <= 99):
        raise InputError(f"rt_priority: expected an int in 1..99 (SCHED_FIFO), got {priority!r}")
    return priority


def demote_to_normal_priority() -> None:
    """Threads that may block (inference, sensor reads, printing) must never outrank the
    control thread (same-priority FIFO threads do not preempt each other), so a thread that
    inherited SCHED_FIFO drops back to SCHED_OTHER."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
