"""Episode-aware windows: which rows make the observation history and the action chunk of
every training sample. No window crosses an episode boundary: before an episode's start the
first observation is repeated, past its end the last action is repeated (the robot holds its
final command)."""

from __future__ import annotations

import numpy as np


def window_indices(episode_ends, horizon: int, n_obs_steps: int):
    """-> (episode [M], obs_rows [M, n_obs_steps], action_rows [M, horizon]), one sample per row.
    Row indices address arrays that stack the episodes one after another."""
    if horizon < 1 or n_obs_steps < 1:
        raise ValueError(f"horizon/n_obs_steps: expected >= 1, given {horizon}/{n_obs_steps}")
    ends = np.asarray(episode_ends, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    ep = np.repeat(np.arange(len(ends)), ends - starts)
    t = np.arange(int(ends[-1]) if len(ends) else 0)
    s, e = starts[ep][:, None], ends[ep][:, None]
    # clipping global rows into [start, end - 1] gives both paddings at once
    a_rows = np.clip(t[:, None] + np.arange(horizon)[None], s, e - 1)
    o_rows = np.clip(t[:, None] + np.arange(-n_obs_steps + 1, 1)[None], s, e - 1)
    return ep, o_rows, a_rows
