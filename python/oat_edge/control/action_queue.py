"""Receding-horizon action queue: which action of which chunk is sent next.

A chunk predicted from the observation read at cycle `s` covers cycles s, s+1, ..., s+H-1.
Only the first `n_action_steps` of it are executed (receding horizon), and when the chunk
arrives `elapsed` cycles late (background inference) its first `elapsed` actions are already
in the past, so they are skipped: the queue then holds chunk[elapsed : n_action_steps].
"""

from __future__ import annotations

from collections import deque

import numpy as np


class ActionQueue:
    def __init__(self, horizon: int, action_dim: int, n_action_steps: int):
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        if not (isinstance(action_dim, int) and action_dim >= 1):
            raise ValueError(f"action_dim must be an int >= 1, got {action_dim!r}")
        if not (isinstance(n_action_steps, int) and 1 <= n_action_steps <= horizon):
            raise ValueError(
                f"n_action_steps must be an int in 1..horizon ({horizon}), got {n_action_steps!r}")
        self.horizon = horizon
        self.action_dim = action_dim
        self.n_action_steps = n_action_steps
        self._queue: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def load(self, chunk: np.ndarray, elapsed: int = 0) -> int:
        """Replace the queue by the part of `chunk` that is still in the future.

        Returns the number of actions queued. A chunk older than its whole horizon is stale:
        nothing is queued (0) and the previous queue is kept, so the caller can count it.
        """
        chunk = np.asarray(chunk)
        if chunk.shape != (self.horizon, self.action_dim):
            raise ValueError(
                f"chunk shape {chunk.shape} != (horizon, action_dim) = "
                f"({self.horizon}, {self.action_dim})")
        if elapsed < 0:
            raise ValueError(f"elapsed must be >= 0, got {elapsed}")
        if elapsed >= self.horizon:
            return 0
        # A late chunk still contributes at least its best-aligned action.
        stop = min(self.horizon, max(self.n_action_steps, elapsed + 1))
        self._queue = deque(np.array(a, dtype=np.float64) for a in chunk[elapsed:stop])
        return len(self._queue)

    def pop(self) -> np.ndarray | None:
        """Next action, or None when the queue ran dry."""
        return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        self._queue.clear()
