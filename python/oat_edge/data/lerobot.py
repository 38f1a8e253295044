"""LeRobotDataset readers: v3.0 (many episodes per file) and v2.1 (one file per episode).

v3.0: meta/info.json (features, fps, `data_path`/`video_path` templates), meta/stats.json,
meta/tasks.parquet, meta/episodes/chunk-*/file-*.parquet (per episode: `dataset_from_index`,
`dataset_to_index`, `data/chunk_index`, `data/file_index`, and per camera
`videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}`), data/chunk-*/file-*.parquet.
A camera frame of row r is the frame of the episode's video file shown at
`from_timestamp + timestamp[r]`.

v2.1: meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl, meta/episodes_stats.jsonl,
data/chunk-*/episode_*.parquet and videos/chunk-*/<key>/episode_*.mp4 (timestamps start at 0 in
every episode's file).

Only pyarrow is needed to read states and actions; PyAV only when a camera is asked for.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

import numpy as np

from oat_edge.data.episodes import EpisodeDataset, Feature, check_not_empty
from oat_edge.data.errors import DatasetError, where
from oat_edge.data.stats import merge_stats
from oat_edge.data.video import decode_frames

VERSIONS = ("v3.0", "v2.1")
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _pq():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DatasetError("reading LeRobot datasets needs pyarrow: pip install pyarrow "
                           "(or pip install 'oat_edge[train]')") from None
    return pa, pq


def _read_parquet(path, columns=None):
    pa, pq = _pq()
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file missing; the dataset's metadata points to it - "
                           f"re-copy the dataset")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path}: corrupt or truncated parquet file ({exc}); re-copy or "
                           f"re-export it") from None
    except KeyError as exc:  # a requested column is absent
        raise DatasetError(f"{path}: column {exc} missing") from None


def _read_columns(path, columns, why):
    """Only `columns` of a parquet file; a missing one is named with `why` it is needed."""
    pa, pq = _pq()
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file missing; the dataset's metadata points to it - "
                           f"re-copy the dataset")
    try:
        names = pq.ParquetFile(path).schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise DatasetError(f"{path}: column {missing[0]!r} missing; {why}")
        return pq.read_table(path, columns=list(columns))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path}: corrupt or truncated parquet file ({exc}); re-copy or "
                           f"re-export it") from None


def _read_json(path):
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file missing; a LeRobot dataset directory has "
                           f"meta/info.json - is this the dataset's root?")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None


def _read_jsonl(path):
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file missing (LeRobot v2.1 keeps it in meta/)")
    rows = []
    with open(path) as f:
        for i, line in enumerate(f):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}: line {i + 1}: not valid JSON ({exc})") from None
    return rows


def column_to_numpy(col, path, key, rows_shape):
    """A parquet column (scalars or [nested] lists) -> numpy [N, *rows_shape]."""
    pa, _ = _pq()
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    n = len(col)
    x = col
    depth = 0
    while pa.types.is_list(x.type) or pa.types.is_fixed_size_list(x.type) or \
            pa.types.is_large_list(x.type):
        if x.null_count:
            raise DatasetError(f"{path}: {key}: {x.null_count} empty (null) values")
        x = x.flatten()
        depth += 1
    if x.null_count:
        raise DatasetError(f"{path}: {key}: {x.null_count} empty (null) values")
    flat = x.to_numpy(zero_copy_only=False)
    per = int(np.prod(rows_shape)) if rows_shape else 1
    if flat.size != n * per:
        lengths = None
        if depth and hasattr(col, "value_lengths"):
            lengths = np.asarray(col.value_lengths())
        bad = int(np.flatnonzero(lengths != per)[0]) if lengths is not None and \
            (lengths != per).any() else None
        raise DatasetError(f"{path}: {key}: expected {per} values per frame (shape "
                           f"{list(rows_shape)}), given {flat.size} values for {n} frames"
                           + (f" (first bad row {bad})" if bad is not None else ""))
    return flat.reshape((n,) + tuple(rows_shape))


@dataclass
class LeRobotDataset(EpisodeDataset):
    """A LeRobot dataset directory (v3.0 or v2.1), read with pyarrow (+ PyAV for cameras)."""
    info: dict = field(default_factory=dict, repr=False)
    data_files: list = field(default_factory=list, repr=False)   # per row source (file, rows)
    _file_of_row: np.ndarray = None
    _video_spans: dict = field(default_factory=dict, repr=False)  # key -> [(file, from, ep)]

    def source_of_row(self, row: int) -> str:
        return self.data_files[int(self._file_of_row[row])][0]

    def _tables(self, columns):
        """Read `columns` of every data file, stacked in the dataset's row order."""
        return [(path, _read_columns(path, columns, "info.json declares it as a feature - the "
                                      "data file does not match its metadata"), rows)
                for path, rows in self.data_files]

    def _read_column(self, f: Feature) -> np.ndarray:
        out = []
        for path, t, rows in self._tables([f.key]):
            x = column_to_numpy(t.column(f.key), path, f.key, f.shape)
            out.append(x[rows])
        x = np.concatenate(out)
        if f.dtype.startswith(("float", "int", "uint", "bool")):
            want = np.dtype(f.dtype)
            if x.dtype != want:
                raise DatasetError(f"{self.data_files[0][0]}: {f.key}: expected dtype {f.dtype} "
                                   f"as declared in info.json, given {x.dtype}")
            x = x.astype(want, copy=False)
        return x

    def _read_frames(self, f: Feature, progress) -> np.ndarray:
        ts = self.column("timestamp").reshape(-1).astype(np.float64)
        ep_ids, frame_no = self.episode_of_row()
        # consecutive episodes in the same video file make one segment: each file decoded once
        segments = []
        for e, (vpath, offset) in enumerate(self._video_spans[f.key]):
            s, t = int(self.episode_starts[e]), int(self.episode_ends[e])
            if segments and segments[-1][0] == vpath:
                segments[-1][1].append(ts[s:t] + offset)
                segments[-1][2].append(np.arange(s, t))
            else:
                segments.append((vpath, [ts[s:t] + offset], [np.arange(s, t)]))
        segs = []
        for vpath, times, rows in segments:
            rows = np.concatenate(rows)
            segs.append((vpath, np.concatenate(times), (ep_ids[rows], frame_no[rows])))
        return decode_frames(segs, self.fps, f.shape, what=f.key, progress=progress)


def open_lerobot(root) -> LeRobotDataset:
    root = os.path.abspath(str(root))
    info_path = os.path.join(root, "meta", "info.json")
    info = _read_json(info_path)
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise DatasetError(f"{info_path}: codebase_version: expected one of {list(VERSIONS)}, "
                           f"given {version!r}; convert the dataset with lerobot's converter "
                           f"to v3.0")
    for k in ("fps", "features"):
        if k not in info:
            raise DatasetError(f"{info_path}: field {k!r} missing")
    features = {}
    for k, spec in info["features"].items():
        try:
            features[k] = Feature(k, str(spec["dtype"]), tuple(int(d) for d in spec["shape"]),
                                  spec.get("names"))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{info_path}: feature {k!r}: expected dtype and shape, given "
                               f"{spec}") from None
    # scalar features are stored as one value per row: shape [1] in info.json
    if version == "v3.0":
        ds = _open_v3(root, info, features)
    else:
        ds = _open_v21(root, info, features)
    return ds


def _task_names(path, table):
    """tasks.parquet: task strings as the (pandas) index or a `task` column, plus task_index."""
    cols = table.column_names
    name_col = "task" if "task" in cols else next(
        (c for c in cols if c not in ("task_index",)), None)
    if name_col is None or "task_index" not in cols:
        raise DatasetError(f"{path}: expected columns task_index and the task strings, given "
                           f"{cols}")
    idx = table.column("task_index").to_numpy()
    names = table.column(name_col).to_pylist()
    out = [None] * (int(idx.max()) + 1 if len(idx) else 0)
    for i, n in zip(idx, names):
        out[int(i)] = str(n)
    return out


def _open_v3(root, info, features):
    info_path = os.path.join(root, "meta", "info.json")
    if "data_path" not in info:
        raise DatasetError(f"{info_path}: field 'data_path' missing")
    cameras = [k for k, f in features.items() if f.is_camera]
    eps, ep_files = _episode_meta(root, cameras)
    lo, hi = eps["dataset_from_index"].astype(np.int64), eps["dataset_to_index"].astype(np.int64)
    check_not_empty(root, len(lo), int((hi - lo).sum()) if len(lo) else 0)
    for e in np.flatnonzero(hi <= lo):
        raise DatasetError(f"{where(ep_files[0], eps['episode_index'][e])}: expected "
                           f"dataset_to_index > dataset_from_index, given {lo[e]}..{hi[e]}")
    data_files, file_of_row = _locate_rows(root, info, eps, lo, hi)
    ends = np.cumsum(hi - lo).astype(np.int64)

    tasks_path = os.path.join(root, "meta", "tasks.parquet")
    tasks = _task_names(tasks_path, _read_parquet(tasks_path))
    stats_path = os.path.join(root, "meta", "stats.json")
    stats = _read_json(stats_path) if os.path.isfile(stats_path) else None
    spans = {k: _video_spans(root, info, eps, k) for k in cameras}
    ds = LeRobotDataset(path=root, format="lerobot v3.0", fps=float(info["fps"]),
                        features=features, episode_ends=ends,
                        episode_ids=eps["episode_index"].astype(np.int64),
                        episode_task=np.zeros(len(ends), np.int64), tasks=tasks, stats=stats,
                        meta_keys=BOOKKEEPING, info=info, data_files=data_files,
                        _file_of_row=file_of_row, _video_spans=spans)
    ds.episode_task = _episode_tasks(ds, tasks_path)
    return ds


def _episode_meta(root, cameras):
    """meta/episodes/*.parquet, the columns we use, as arrays sorted by episode_index; and the
    files read (for messages)."""
    ep_files = sorted(glob.glob(os.path.join(root, "meta", "episodes", "chunk-*", "file-*.parquet")))
    if not ep_files:
        raise DatasetError(f"{root}/meta/episodes: no chunk-*/file-*.parquet; expected the "
                           f"per-episode metadata of a v3.0 dataset")
    need = ["episode_index", "dataset_from_index", "dataset_to_index", "data/chunk_index",
            "data/file_index"]
    for k in cameras:
        need += [f"videos/{k}/chunk_index", f"videos/{k}/file_index",
                 f"videos/{k}/from_timestamp", f"videos/{k}/to_timestamp"]
    eps = {c: [] for c in need}
    for p in ep_files:
        t = _read_parquet(p)
        missing = [c for c in need if c not in t.column_names]
        if missing:
            raise DatasetError(f"{p}: column {missing[0]!r} missing (v3.0 episode metadata)")
        for c in need:
            eps[c].append(t.column(c).to_numpy())
    eps = {c: np.concatenate(v) for c, v in eps.items()}
    order = np.argsort(eps["episode_index"], kind="stable")
    return {c: v[order] for c, v in eps.items()}, ep_files


def _locate_rows(root, info, eps, lo, hi):
    """The data files in the order their episodes come, each with the positions of its rows in
    global `index` order, and for every row which of those files holds it."""
    data_files, file_of_row, files = [], [], {}
    for e in range(len(lo)):
        path = os.path.join(root, info["data_path"].format(
            chunk_index=int(eps["data/chunk_index"][e]), file_index=int(eps["data/file_index"][e])))
        if path not in files:
            t = _read_columns(path, BOOKKEEPING[1:4], "every LeRobot data file has index, "
                              "episode_index and frame_index")
            files[path] = [t.column(c).to_numpy() for c in ("index", "episode_index",
                                                           "frame_index")]
        pos = _episode_rows(path, files[path], int(eps["episode_index"][e]), lo[e], hi[e])
        if not data_files or data_files[-1][0] != path:
            data_files.append([path, []])
        data_files[-1][1].append(pos)
        file_of_row.append(np.full(len(pos), len(data_files) - 1))
    return [(p, np.concatenate(r)) for p, r in data_files], np.concatenate(file_of_row)


def _episode_rows(path, columns, ep_id, lo, hi):
    """Positions in one data file of the rows with global index lo..hi-1, checked to be episode
    `ep_id`'s frames 0, 1, ... in order."""
    index, ep_col, fr_col = columns
    want = np.arange(lo, hi)
    sorter = np.argsort(index, kind="stable")
    pos = sorter[np.searchsorted(index, want, sorter=sorter).clip(0, max(len(index) - 1, 0))] \
        if len(index) else np.zeros(0, np.int64)
    got = index[pos] if len(index) else np.full(len(want), -1)
    if len(got) != len(want) or np.any(got != want):
        k = int(np.flatnonzero(got != want)[0]) if len(got) == len(want) else 0
        raise DatasetError(f"{where(path, ep_id, k)}: row with index {lo + k} missing; "
                           f"meta/episodes says the episode spans index {lo}..{hi} - "
                           f"the data file is truncated or does not belong to this metadata")
    wrong = np.flatnonzero(ep_col[pos] != ep_id)
    if len(wrong):
        raise DatasetError(f"{where(path, ep_id, int(wrong[0]))}: episode_index "
                           f"{ep_col[pos][wrong[0]]} in the data, {ep_id} in meta/episodes")
    wrong = np.flatnonzero(fr_col[pos] != np.arange(len(want)))
    if len(wrong):
        raise DatasetError(f"{where(path, ep_id, int(wrong[0]))}: frame_index "
                           f"{fr_col[pos][wrong[0]]}, expected {int(wrong[0])} (frames out "
                           f"of order or missing)")
    return pos


def _video_spans(root, info, eps, key):
    """Camera `key`: per episode, its video file and the timestamp where the episode starts."""
    if "video_path" not in info or not info["video_path"]:
        raise DatasetError(f"{os.path.join(root, 'meta', 'info.json')}: camera {key!r} declared "
                           f"but no video_path template")
    return [(os.path.join(root, info["video_path"].format(
        video_key=key, chunk_index=int(eps[f"videos/{key}/chunk_index"][e]),
        file_index=int(eps[f"videos/{key}/file_index"][e]))),
        float(eps[f"videos/{key}/from_timestamp"][e])) for e in range(len(eps["episode_index"]))]


def _episode_tasks(ds, tasks_path):
    """Each episode's task: the task_index of its first frame (LeRobot conditions per frame; our
    policies per episode)."""
    if "task_index" not in ds.features:
        ds.features["task_index"] = Feature("task_index", "int64", (1,))
    ti = ds.column("task_index").reshape(-1)
    first = ti[ds.episode_starts]
    ep_ids, fr = ds.episode_of_row()
    bad = np.flatnonzero((first < 0) | (first >= len(ds.tasks)))
    if len(bad):
        e = int(bad[0])
        raise DatasetError(f"{where(ds.source_of_row(int(ds.episode_starts[e])), ds.episode_ids[e], 0)}: "
                           f"task_index {first[e]} not in {tasks_path} ({len(ds.tasks)} tasks)")
    return first.astype(np.int64)


def _open_v21(root, info, features):
    info_path = os.path.join(root, "meta", "info.json")
    for k in ("data_path", "chunks_size"):
        if k not in info:
            raise DatasetError(f"{info_path}: field {k!r} missing")
    ep_rows = sorted(_read_jsonl(os.path.join(root, "meta", "episodes.jsonl")),
                     key=lambda r: r["episode_index"])
    task_rows = _read_jsonl(os.path.join(root, "meta", "tasks.jsonl"))
    tasks = [None] * (max((r["task_index"] for r in task_rows), default=-1) + 1)
    for r in task_rows:
        tasks[int(r["task_index"])] = str(r["task"])
    lengths = np.array([int(r["length"]) for r in ep_rows], np.int64)
    check_not_empty(root, len(ep_rows), int(lengths.sum()))
    chunks = int(info["chunks_size"])
    data_files, file_of_row = [], []
    for i, r in enumerate(ep_rows):
        e = int(r["episode_index"])
        path = os.path.join(root, info["data_path"].format(episode_chunk=e // chunks,
                                                           episode_index=e))
        t = _read_columns(path, ["frame_index"], "every LeRobot data file has frame_index")
        if t.num_rows != lengths[i]:
            raise DatasetError(f"{where(path, e)}: expected {lengths[i]} frames (episodes.jsonl), "
                               f"given {t.num_rows}")
        fr = t.column("frame_index").to_numpy()
        order = np.argsort(fr, kind="stable")
        wrong = np.flatnonzero(fr[order] != np.arange(len(fr)))
        if len(wrong):
            raise DatasetError(f"{where(path, e, int(wrong[0]))}: frame_index "
                               f"{fr[order][wrong[0]]}, expected {int(wrong[0])}")
        data_files.append((path, order))
        file_of_row.append(np.full(lengths[i], i))
    stats = None
    sp = os.path.join(root, "meta", "episodes_stats.jsonl")
    if os.path.isfile(sp):
        per = [r["stats"] for r in _read_jsonl(sp)]
        keys = set.intersection(*(set(s) for s in per)) if per else set()
        stats = {k: merge_stats([s[k] for s in per]) for k in sorted(keys)}
    spans = {}
    cameras = [k for k, f in features.items() if f.is_camera]
    for k in cameras:
        if not info.get("video_path"):
            raise DatasetError(f"{info_path}: camera {k!r} declared but no video_path template")
        spans[k] = [(os.path.join(root, info["video_path"].format(
            episode_chunk=int(r["episode_index"]) // chunks, video_key=k,
            episode_index=int(r["episode_index"]))), 0.0) for r in ep_rows]
    ds = LeRobotDataset(path=root, format="lerobot v2.1", fps=float(info["fps"]),
                        features=features, episode_ends=np.cumsum(lengths),
                        episode_ids=np.array([int(r["episode_index"]) for r in ep_rows], np.int64),
                        episode_task=np.zeros(len(lengths), np.int64), tasks=tasks, stats=stats,
                        meta_keys=BOOKKEEPING, info=info, data_files=data_files,
                        _file_of_row=np.concatenate(file_of_row), _video_spans=spans)
    ds.episode_task = _episode_tasks(ds, os.path.join(root, "meta", "tasks.jsonl"))
    return ds
