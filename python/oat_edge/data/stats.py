"""Per-feature statistics in LeRobot's layout ({min, max, mean, std, count}, lists per
dimension), computed from data or merged from per-episode statistics."""

from __future__ import annotations

import numpy as np

STAT_KEYS = ("min", "max", "mean", "std", "count")


def feature_stats(x) -> dict:
    """x [N, *shape] -> stats over N, each a list of shape `shape` (count: [N])."""
    x = np.asarray(x, dtype=np.float64)
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [int(len(x))]}


def image_stats(frames) -> dict:
    """uint8 [N, H, W, 3] -> per-channel stats in [0, 1], shaped [3, 1, 1] as LeRobot stores."""
    x = np.asarray(frames, dtype=np.float64).reshape(-1, 3) / 255.0
    per = lambda v: [[[float(c)]] for c in v]  # noqa: E731
    return {"min": per(x.min(0)), "max": per(x.max(0)), "mean": per(x.mean(0)),
            "std": per(x.std(0)), "count": [int(len(frames))]}


def merge_stats(per_episode: list) -> dict:
    """Combine per-episode stats of one feature (count-weighted mean, pooled std)."""
    n = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in per_episode])
    mean = np.stack([np.asarray(s["mean"], np.float64) for s in per_episode])
    std = np.stack([np.asarray(s["std"], np.float64) for s in per_episode])
    w = (n / n.sum()).reshape((-1,) + (1,) * (mean.ndim - 1))
    m = (w * mean).sum(0)
    var = (w * (std ** 2 + (mean - m) ** 2)).sum(0)
    return {"min": np.min([np.asarray(s["min"]) for s in per_episode], 0).tolist(),
            "max": np.max([np.asarray(s["max"]) for s in per_episode], 0).tolist(),
            "mean": m.tolist(), "std": np.sqrt(var).tolist(), "count": [int(n.sum())]}


def declared_range(stats, key: str, dim: int):
    """(low, high) float32 [dim] of a feature from declared stats, or None when absent or not
    shaped [dim]."""
    s = (stats or {}).get(key)
    if not s or "min" not in s or "max" not in s:
        return None
    lo = np.asarray(s["min"], np.float32).reshape(-1)
    hi = np.asarray(s["max"], np.float32).reshape(-1)
    if lo.shape != (dim,) or hi.shape != (dim,) or not (np.isfinite(lo).all()
                                                       and np.isfinite(hi).all()):
        return None
    return lo, hi
