"""One daemon thread doing one job at a time for the control thread, at normal priority.

The control thread submits a job when the thread is free and later takes the result; it never
waits for the job. Both the sensor reads and background inference run this way.
"""

from __future__ import annotations

import threading

from .priority import demote_to_normal_priority


class JobThread:
    def __init__(self, name: str, work):
        self._work = work                  # job -> result; must not raise
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._job = None
        self._result = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        """No job running and no result waiting to be taken."""
        with self._lock:
            return not self._busy and self._result is None

    def submit(self, job) -> bool:
        """Start `job` unless one is still running (or the thread is closed): False then."""
        with self._lock:
            if self._busy or self._closed:
                return False
            self._busy, self._job = True, job
        self._wake.set()
        return True

    def take(self):
        """The result of the last finished job, once; None when there is none."""
        with self._lock:
            res, self._result = self._result, None
            return res

    def _run(self) -> None:
        demote_to_normal_priority()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                job, self._job = self._job, None
            if job is None:
                continue
            res = self._work(job)
            with self._lock:
                self._result = res
                self._busy = False

    def close(self, timeout: float) -> None:
        """Stop the thread, waiting at most `timeout` for a job in progress: one that never
        returns (a stalled driver) leaves its daemon thread blocked, not the caller."""
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
