"""Action safety filter between the policy and the actuator.

Every action sent is finite and inside the bundle's declared bounds: a non-finite action is
replaced by the last safe one (held), out-of-range values are clamped. Counts are kept so
that the loop summary shows how often the filter had to act.
"""

from __future__ import annotations

import numpy as np


class SafetyFilter:
    def __init__(self, low, high, initial_action=None):
        low = np.asarray(low, dtype=np.float64).reshape(-1)
        high = np.asarray(high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise ValueError(f"action bounds must be two equal-length vectors, got "
                             f"{low.shape} and {high.shape}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("action bounds must be finite")
        if np.any(low > high):
            raise ValueError(f"action bounds have low > high: low={low.tolist()} high={high.tolist()}")
        self.low, self.high = low, high
        if initial_action is None:
            # Before any prediction the safest command we know is the middle of the range
            # (0 for Meta-World's symmetric [-1, 1] actions: no motion, gripper half-open).
            initial_action = (low + high) / 2.0
        initial = np.asarray(initial_action, dtype=np.float64).reshape(-1)
        if initial.shape != low.shape or not np.all(np.isfinite(initial)):
            raise ValueError("initial_action must be a finite vector of the action dimension")
        self.last_safe = np.clip(initial, low, high)
        self.nonfinite_actions = 0
        self.clamped_actions = 0
        self.rejected_chunks = 0

    @property
    def action_dim(self) -> int:
        return self.low.size

    def chunk_ok(self, chunk: np.ndarray) -> bool:
        """A chunk with any NaN/Inf is rejected whole (the policy output is not trustworthy)."""
        ok = bool(np.all(np.isfinite(chunk)))
        if not ok:
            self.rejected_chunks += 1
        return ok

    def filter(self, action) -> tuple[np.ndarray, bool]:
        """Return (safe action, held) where held means the last safe action was repeated."""
        if action is None:
            return self.last_safe.copy(), True
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.low.shape:
            raise ValueError(f"action has {a.size} values, bounds have {self.low.size}")
        if not np.all(np.isfinite(a)):
            self.nonfinite_actions += 1
            return self.last_safe.copy(), True
        clipped = np.clip(a, self.low, self.high)
        if np.any(clipped != a):
            self.clamped_actions += 1
        self.last_safe = clipped
        return clipped.copy(), False

    def counts(self) -> dict:
        return {"nonfinite_actions": self.nonfinite_actions,
                "clamped_actions": self.clamped_actions,
                "rejected_chunks": self.rejected_chunks}

