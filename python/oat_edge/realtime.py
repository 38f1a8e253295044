"""Process set-up for a real-time control loop, and the counters that check it.

ONNX Runtime allocates a few small objects per graph node on every Run(), so a generated token is
not allocation-free inside ORT (docs/bench/allocations.txt). What a control loop needs is that no
allocation reaches the kernel; `prepare_realtime_memory` applies the PREEMPT_RT recipe (malloc
keeps its pages, mlockall where that is safe) so that holds after warm-up, and `thread_faults`
shows it. Call it once at start-up, before loading the Policy (CLI: `oat-edge run --rt-memory`).
"""
from oat_edge.policy import _load_core


def prepare_realtime_memory(lock_memory: bool = True) -> dict:
    """-> {"malloc_pinned": bool, "locked": bool, "message": str}. Never raises for missing
    privileges: locking is skipped (and the message says how to enable it) where MCL_FUTURE under a
    finite RLIMIT_MEMLOCK would make later allocations fail."""
    return dict(_load_core().prepare_realtime_memory(lock_memory))  # a non-bool flag: InputError


def thread_faults() -> dict:
    """Page faults ("minor", "major") and "voluntary_switches" of the calling thread so far."""
    return dict(_load_core().thread_faults())
