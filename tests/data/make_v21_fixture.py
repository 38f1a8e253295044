"""Make the LeRobot v2.1 fixture (one parquet and one video per episode, JSON-lines metadata).

lerobot 0.4.4 writes only v3.0, so this follows the v2.1 layout as lerobot's own v2.1 -> v3.0
converter reads it, with pyarrow and PyAV:
    meta/info.json            codebase_version "v2.1", data_path / video_path templates with
                              {episode_chunk} and {episode_index}, chunks_size, features, fps
    meta/episodes.jsonl       {"episode_index", "tasks", "length"} per line
    meta/tasks.jsonl          {"task_index", "task"} per line
    meta/episodes_stats.jsonl {"episode_index", "stats": {feature: {min, max, mean, std, count}}}
    data/chunk-000/episode_000000.parquet
    videos/chunk-000/<camera>/episode_000000.mp4   (timestamps restart at 0 in every episode)
The content is the v3.0 fixture's (same states, actions, source frames, tasks), so the tests can
compare both versions with one expected file.
    .venv/bin/python tests/data/make_v21_fixture.py
"""

import json
import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
OUT = os.path.join(HERE, "fixtures", "lerobot_v21")
SOURCE = os.path.join(HERE, "fixtures", "lerobot_v30.npz")
CAMERA = "observation.images.front"
FPS = 10


def stats(x):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [len(x)]}


def main():
    from oat_edge.data.video import encode_video  # PyAV encoding, AV1 when available

    z = np.load(SOURCE)
    shutil.rmtree(OUT, ignore_errors=True)
    tasks = []
    for t in z["task"]:
        if str(t) not in tasks:
            tasks.append(str(t))
    ep_rows, stat_rows = [], []
    eps = np.unique(z["episode_index"])
    index = 0
    for e in eps:
        rows = np.flatnonzero(z["episode_index"] == e)
        n = len(rows)
        task = str(z["task"][rows[0]])
        fi = np.arange(n, dtype=np.int64)
        table = pa.table({
            "observation.state": pa.FixedSizeListArray.from_arrays(
                pa.array(z["state"][rows].reshape(-1)), 6),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(z["action"][rows].reshape(-1)), 3),
            "timestamp": pa.array((fi / FPS).astype(np.float32)),
            "frame_index": pa.array(fi),
            "episode_index": pa.array(np.full(n, e, np.int64)),
            "index": pa.array(np.arange(index, index + n, dtype=np.int64)),
            "task_index": pa.array(np.full(n, tasks.index(task), np.int64))})
        index += n
        p = os.path.join(OUT, f"data/chunk-000/episode_{e:06d}.parquet")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        pq.write_table(table, p)
        vinfo = encode_video(z["source_frames"][rows],
                             os.path.join(OUT, f"videos/chunk-000/{CAMERA}/episode_{e:06d}.mp4"), FPS)
        ep_rows.append({"episode_index": int(e), "tasks": [task], "length": n})
        stat_rows.append({"episode_index": int(e), "stats": {
            "observation.state": stats(z["state"][rows]), "action": stats(z["action"][rows])}})
    features = {
        "observation.state": {"dtype": "float32", "shape": [6], "names": [f"q{i}" for i in range(6)]},
        "action": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        CAMERA: {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channels"],
                 "info": vinfo},
        **{k: {"dtype": d, "shape": [1], "names": None} for k, d in (
            ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
            ("index", "int64"), ("task_index", "int64"))}}
    info = {"codebase_version": "v2.1", "robot_type": "test_arm", "total_episodes": len(eps),
            "total_frames": index, "total_tasks": len(tasks), "total_videos": len(eps),
            "total_chunks": 1, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(eps)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    os.makedirs(os.path.join(OUT, "meta"))
    with open(os.path.join(OUT, "meta", "info.json"), "w") as f:
        json.dump(info, f, indent=4)
    for name, rows in (("episodes", ep_rows), ("episodes_stats", stat_rows),
                       ("tasks", [{"task_index": i, "task": t} for i, t in enumerate(tasks)])):
        with open(os.path.join(OUT, "meta", f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
