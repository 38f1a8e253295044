"""One record of everything that went wrong in a control loop, shared by its threads.

Every failure (a sensor read that raised or returned garbage, an act() that raised, a chunk of
the wrong shape or with NaN) is counted under its source, and the first `keep` distinct messages
are kept with their own counts, so a summary says both how often and what, in the order seen.
"""

from __future__ import annotations

import threading


class ErrorLog:
    def __init__(self, keep: int = 20):
        self._keep = keep
        self._lock = threading.Lock()
        self.by_source: dict[str, int] = {}
        self.counts: dict[str, int] = {}   # first `keep` distinct messages -> occurrences
        self.unlisted = 0                  # errors whose message was not among those kept

    @property
    def errors(self) -> int:
        with self._lock:
            return sum(self.by_source.values())

    @property
    def messages(self) -> list[str]:
        with self._lock:
            return list(self.counts)

    def record(self, source: str, message: str) -> str:
        """Count one error of `source` ("sensor", "policy"...); returns the message as kept."""
        message = f"{source}: {message}"
        with self._lock:
            self.by_source[source] = self.by_source.get(source, 0) + 1
            if message in self.counts:
                self.counts[message] += 1
            elif len(self.counts) < self._keep:
                self.counts[message] = 1
            else:
                self.unlisted += 1
        return message

    def call(self, source: str, fn, *args, **kwargs):
        """Run fn; return (result, None) or (None, message). An exception never escapes: the
        loop keeps executing its queue or holding the last safe action instead."""
        try:
            return fn(*args, **kwargs), None
        except Exception as exc:  # noqa: BLE001 - the loop must survive any callback failure
            return None, self.record(source, f"{type(exc).__name__}: {exc}")

    def summary(self) -> dict:
        with self._lock:
            return {"errors": sum(self.by_source.values()),
                    "errors_by_source": dict(self.by_source),
                    "error_messages": list(self.counts),
                    "error_counts": dict(self.counts),
                    "errors_unlisted": self.unlisted}
