"""Loop statistics: percentiles of the per-cycle timings and the counters a summary reports."""

from __future__ import annotations

import numpy as np


def percentiles(values, qs=(50, 90, 99)) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {}
    out = {f"p{q}": float(np.percentile(v, q)) for q in qs}
    out.update(mean=float(v.mean()), max=float(v.max()), n=int(v.size))
    return out


def summarize(records: list[dict], hz: float, extra: dict | None = None) -> dict:
    """Loop summary from per-cycle records (see ControlLoop.step for the fields)."""
    periods = [r["period_ms"] for r in records if r["period_ms"] is not None]
    tokens: dict[str, int] = {}
    for r in records:
        if r["tokens_used"] is not None:
            tokens[str(r["tokens_used"])] = tokens.get(str(r["tokens_used"]), 0) + 1
    duration = records[-1]["t"] - records[0]["t"] if len(records) > 1 else 0.0
    out = {
        "cycles": len(records),
        "hz": hz,
        "achieved_hz": (len(records) - 1) / duration if duration > 0 else None,
        "period_ms": percentiles(periods),
        "jitter_ms": percentiles([r["jitter_ms"] for r in records]),
        "lateness_ms": percentiles([r["lateness_ms"] for r in records]),
        "work_ms": percentiles([r["work_ms"] for r in records]),
        "inference_ms": percentiles([r["inference_ms"] for r in records]),
        "tokens_hist": dict(sorted(tokens.items(), key=lambda kv: int(kv[0]))),
        "overruns": sum(1 for r in records if r["overrun"]),
        "held": sum(1 for r in records if r["held"]),
        "replans": sum(1 for r in records if r["inference_ms"] is not None),
        "replans_without_obs": sum(1 for r in records if r["obs_missing"]),
    }
    out.update(extra or {})
    return out
