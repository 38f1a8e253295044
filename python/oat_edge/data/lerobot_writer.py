"""Write episodes as a LeRobotDataset v3.0 directory (what `lerobot` itself records).

    write_lerobot(out_dir, fps=50, episodes=[...], robot_type="sawyer")

Each episode is a dict of per-frame arrays keyed by feature (`observation.state`, `action`,
`observation.images.<camera>` as uint8 [T, H, W, 3]) plus `task` (a string). The layout:

    meta/info.json                               features, fps, path templates, totals
    meta/stats.json                              per-feature min/max/mean/std/count
    meta/tasks.parquet                           task string -> task_index
    meta/episodes/chunk-000/file-000.parquet     per-episode rows, index ranges, video spans, stats
    data/chunk-000/file-000.parquet              frames of many episodes
    videos/<camera>/chunk-000/file-000.mp4       the camera's frames of those episodes, in order

The dataset is built in a temporary directory beside `out_dir` and renamed into place at the
end: a failure leaves no partial dataset, and an existing `out_dir` is replaced only with
`overwrite=True`, after the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from oat_edge.atomic import write_json
from oat_edge.data.errors import DatasetError
from oat_edge.data.stats import feature_stats, image_stats
from oat_edge.data.video import encode_video

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
# Beyond these sizes lerobot starts a new file; ours are far below, so one file of each.
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DatasetError("writing LeRobot datasets needs pyarrow: pip install pyarrow "
                           "(or pip install 'oat_edge[train]')") from None
    return pa, pq


def _is_camera(x) -> bool:
    return x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] == 3


def _write_table(pq, table, path):
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _vector_column(pa, x):
    """[N, D] -> fixed-size list column; [N] -> scalar column."""
    x = np.ascontiguousarray(x)
    if x.ndim == 1:
        return pa.array(x)
    flat = pa.array(x.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(x.shape[1:])))


def write_lerobot(out_dir, fps: float, episodes, robot_type=None, overwrite=False,
                  feature_names=None, codec=None) -> dict:
    """Write `episodes` (list of dicts, see the module doc) as LeRobot v3.0 at `out_dir`.
    Returns the info.json dict."""
    pa, pq = _pa()
    episodes = list(episodes)
    if not episodes:
        raise DatasetError(f"{out_dir}: expected at least one episode to write, given none")
    if not fps > 0:
        raise DatasetError(f"{out_dir}: fps: expected > 0, given {fps}")
    out_dir = os.path.abspath(str(out_dir))
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise DatasetError(f"{out_dir}: already exists and is not empty; choose another "
                           f"directory or pass overwrite")
    keys = [k for k in episodes[0] if k != "task"]
    for e, ep in enumerate(episodes):
        if sorted(k for k in ep if k != "task") != sorted(keys) or "task" not in ep:
            raise DatasetError(f"{out_dir}: episode {e}: expected keys {sorted(keys)} + 'task', "
                               f"given {sorted(ep)}")
        lengths = {k: len(ep[k]) for k in keys}
        if len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
            raise DatasetError(f"{out_dir}: episode {e}: expected the same non-zero number of "
                               f"frames in every feature, given {lengths}")
    first = {k: np.asarray(episodes[0][k]) for k in keys}
    cameras = [k for k in keys if _is_camera(first[k])]
    numeric = [k for k in keys if k not in cameras]

    tasks = []
    for ep in episodes:
        if ep["task"] not in tasks:
            tasks.append(str(ep["task"]))
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        info = _write_all(pa, pq, tmp, fps, episodes, numeric, cameras, tasks, robot_type,
                          feature_names or {}, codec)
        if os.path.exists(out_dir):
            old = f"{tmp}.old"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _write_all(pa, pq, root, fps, episodes, numeric, cameras, tasks, robot_type, names, codec):
    n_eps = len(episodes)
    lengths = np.array([len(ep[numeric[0] if numeric else cameras[0]]) for ep in episodes])
    ends = np.cumsum(lengths)
    starts = ends - lengths
    task_index = np.array([tasks.index(str(ep["task"])) for ep in episodes], np.int64)
    cols, features, stats = _write_frames(pa, pq, root, fps, episodes, numeric, names, lengths,
                                          task_index)
    spans = {k: _write_video(root, fps, episodes, k, codec, features, stats, starts, ends)
             for k in cameras}
    _write_episodes(pa, pq, root, cols, numeric + list(BOOK_KEYS), tasks, task_index, starts,
                    ends, spans)

    _write_table(pq, _tasks_table(pa, tasks), os.path.join(root, "meta", "tasks.parquet"))
    write_json(os.path.join(root, "meta", "stats.json"), stats, indent=4)
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type,
            "total_episodes": n_eps, "total_frames": int(ends[-1]), "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILES_SIZE_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_MB,
            "fps": int(fps) if float(fps).is_integer() else float(fps),
            "splits": {"train": f"0:{n_eps}"}, "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if cameras else None, "features": features}
    write_json(os.path.join(root, "meta", "info.json"), info, indent=4)
    return info


# the bookkeeping columns every frame carries, in the order they are written
BOOK_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _write_frames(pa, pq, root, fps, episodes, numeric, names, lengths, task_index):
    """The frames table (one file): the numeric features, then the bookkeeping columns. Returns
    the columns and each one's feature entry and statistics."""
    total = int(lengths.sum())
    cols, features, stats = {}, {}, {}
    for k in numeric:
        x = np.concatenate([np.asarray(ep[k]) for ep in episodes])
        if x.dtype == np.float64:
            x = x.astype(np.float32)
        cols[k] = _vector_column(pa, x)
        shape = list(x.shape[1:]) or [1]
        features[k] = {"dtype": str(x.dtype), "shape": shape,
                       "names": names.get(k, [f"{k.split('.')[-1]}_{i}" for i in
                                              range(int(np.prod(shape)))])}
        stats[k] = feature_stats(x.reshape(total, -1))
    frame_index = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
    book = dict(zip(BOOK_KEYS, (
        (frame_index / fps).astype(np.float32), frame_index,
        np.repeat(np.arange(len(episodes)), lengths).astype(np.int64),
        np.arange(total, dtype=np.int64), np.repeat(task_index, lengths))))
    for k, v in book.items():
        cols[k] = pa.array(v)
        features[k] = {"dtype": str(v.dtype), "shape": [1], "names": None}
        stats[k] = feature_stats(v.reshape(-1, 1))
    _write_table(pq, pa.table(cols), os.path.join(root, DATA_PATH.format(chunk_index=0,
                                                                         file_index=0)))
    return cols, features, stats


def _write_video(root, fps, episodes, key, codec, features, stats, starts, ends):
    """Camera `key` as one video, episodes back to back; adds its feature entry and statistics
    and returns each episode's (from, to) timestamps."""
    frames = np.concatenate([np.asarray(ep[key]) for ep in episodes])
    vinfo = encode_video(frames, os.path.join(root, VIDEO_PATH.format(
        video_key=key, chunk_index=0, file_index=0)), fps, codec)
    features[key] = {"dtype": "video", "shape": list(frames.shape[1:]),
                     "names": ["height", "width", "channels"], "info": vinfo}
    stats[key] = image_stats(frames)
    return starts / fps, ends / fps


def _write_episodes(pa, pq, root, cols, stat_keys, tasks, task_index, starts, ends, spans):
    """meta/episodes: where each episode's rows and video frames are, and its own statistics."""
    n_eps, lengths = len(starts), ends - starts
    ecols = {"episode_index": np.arange(n_eps, dtype=np.int64),
             "tasks": pa.array([[tasks[t]] for t in task_index], pa.list_(pa.string())),
             "length": lengths.astype(np.int64),
             "data/chunk_index": np.zeros(n_eps, np.int64),
             "data/file_index": np.zeros(n_eps, np.int64),
             "dataset_from_index": starts.astype(np.int64),
             "dataset_to_index": ends.astype(np.int64)}
    for k, (t0, t1) in spans.items():
        ecols[f"videos/{k}/chunk_index"] = np.zeros(n_eps, np.int64)
        ecols[f"videos/{k}/file_index"] = np.zeros(n_eps, np.int64)
        ecols[f"videos/{k}/from_timestamp"] = t0.astype(np.float64)
        ecols[f"videos/{k}/to_timestamp"] = t1.astype(np.float64)
    for k in stat_keys:
        for s in ("min", "max", "mean", "std", "count"):
            per = []
            for e in range(n_eps):
                v = cols[k].slice(int(starts[e]), int(lengths[e]))
                x = np.asarray(v.flatten() if hasattr(v, "flatten") else v, np.float64)
                x = x.reshape(int(lengths[e]), -1)
                per.append(feature_stats(x)[s])
            dtype = pa.int64() if s == "count" else pa.float64()
            ecols[f"stats/{k}/{s}"] = pa.array(per, pa.list_(dtype))
    ecols["meta/episodes/chunk_index"] = np.zeros(n_eps, np.int64)
    ecols["meta/episodes/file_index"] = np.zeros(n_eps, np.int64)
    _write_table(pq, pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v))
                               for k, v in ecols.items()}),
                 os.path.join(root, EPISODES_PATH.format(chunk_index=0, file_index=0)))


def _tasks_table(pa, tasks):
    """task_index plus the task strings as the table's pandas index, which is where lerobot
    (pandas.read_parquet) looks the strings up."""
    pandas_meta = {"index_columns": ["__index_level_0__"], "column_indexes": [],
                   "columns": [{"name": "task_index", "field_name": "task_index",
                                "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "__index_level_0__",
                                "pandas_type": "unicode", "numpy_type": "object",
                                "metadata": None}],
                   "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}}
    t = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)),
                  "__index_level_0__": pa.array(tasks, pa.string())})
    return t.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
