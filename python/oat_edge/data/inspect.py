"""`oat-edge inspect-dataset PATH`: what a dataset holds, checked, before training on it.

Prints format, fps, episodes, frames, every feature (dtype, shape, role), tasks with their
episode counts and the declared statistics (or those computed, when the dataset has none).
Reading the numeric features checks them (declared shapes and dtypes, NaN/Inf); cameras are
decoded and checked only with --check-video.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from oat_edge.data.open import open_dataset
from oat_edge.data.stats import feature_stats


def _fmt(v, n=6):
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    s = ", ".join(f"{x:.4g}" for x in a[:n])
    return f"[{s}{', ...' if a.size > n else ''}]"


def role(ds, key) -> str:
    if key == ds.action_key:
        return "action"
    if key in ds.camera_keys:
        return "camera"
    if key in ds.state_keys:
        return "state"
    return "bookkeeping" if key in ds.meta_keys else "other"


def report(ds, check_video=False, progress=None) -> dict:
    """Summary dict; reads (and so validates) the action and state features."""
    s = ds.summary()
    counts = np.bincount(ds.episode_task, minlength=len(ds.tasks))
    s["tasks"] = {t: int(c) for t, c in zip(ds.tasks, counts)}
    s["stats_source"] = "declared" if ds.stats else "computed"
    stats = {}
    for key in [ds.action_key] + ds.state_keys:
        x = ds.column(key)
        declared = (ds.stats or {}).get(key)
        st = declared if declared else feature_stats(x.reshape(len(x), -1))
        stats[key] = {k: st[k] for k in ("min", "max", "mean", "std") if k in st}
    s["stats"] = stats
    for key in ds.camera_keys:
        s["features"][key]["role"] = "camera"
        if check_video:
            f = ds.frames(key, progress=progress)
            s["features"][key]["decoded"] = list(f.shape)
    for key in s["features"]:
        s["features"][key]["role"] = role(ds, key)
    return s


def format_report(s) -> str:
    lines = [f"dataset     {s['path']}",
             f"format      {s['format']}   fps {s['fps']:g}",
             f"episodes    {s['episodes']}   frames {s['frames']}   length min/mean/max "
             f"{s['episode_length']['min']}/{s['episode_length']['mean']:.1f}/"
             f"{s['episode_length']['max']}",
             "features"]
    for k, f in s["features"].items():
        extra = f"  decoded {f['decoded']}" if "decoded" in f else ""
        lines.append(f"  {k:40s} {f['dtype']:8s} {str(f['shape']):14s} {f['role']}{extra}")
    lines.append(f"tasks       {len(s['tasks'])}")
    for t, c in s["tasks"].items():
        lines.append(f"  {c:5d} episodes  {t}")
    lines.append(f"stats ({s['stats_source']})")
    for k, st in s["stats"].items():
        lines.append(f"  {k}")
        for name in ("min", "max", "mean", "std"):
            if name in st:
                lines.append(f"    {name:5s} {_fmt(st[name])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="oat-edge inspect-dataset",
                                description="Print and check what a dataset holds: episodes, "
                                "frames, features, fps, tasks and statistics.")
    p.add_argument("path", help="LeRobot dataset directory (v3.0 / v2.1) or robomimic .hdf5")
    p.add_argument("--filter-key", default=None, help="robomimic mask/<name> to select demos")
    p.add_argument("--check-video", action="store_true",
                   help="also decode every camera (frame-accurate, cached) and check it")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    s = report(open_dataset(a.path, filter_key=a.filter_key), check_video=a.check_video)
    print(json.dumps(s, indent=1) if a.json else format_report(s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
