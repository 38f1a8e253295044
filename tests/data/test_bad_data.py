"""Every kind of bad dataset gets a DatasetError naming the file (and the episode and frame
when the problem is inside one), never a crash or silent garbage."""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_fixtures import CAMERA
from oat_edge.data import DatasetError, open_dataset

DATA = "data/chunk-000/file-000.parquet"
VIDEO = f"videos/{CAMERA}/chunk-000/file-000.mp4"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"


def _edit_info(root, fn):
    p = root / "meta" / "info.json"
    info = json.loads(p.read_text())
    fn(info)
    p.write_text(json.dumps(info))


def _edit_table(path, fn):
    t = pq.read_table(path)
    pq.write_table(fn(t), path)


def _set_column(t, name, values):
    return t.set_column(t.column_names.index(name), name, values)


def test_unknown_codebase_version(v30_copy):
    _edit_info(v30_copy, lambda i: i.update(codebase_version="v1.6"))
    with pytest.raises(DatasetError, match=r"info.json: codebase_version: expected one of "
                                           r"\['v3.0', 'v2.1'\], given 'v1.6'"):
        open_dataset(v30_copy)


def test_missing_feature_key_in_the_data(v30_copy):
    _edit_table(v30_copy / DATA, lambda t: t.drop_columns(["action"]))
    ds = open_dataset(v30_copy)
    with pytest.raises(DatasetError, match=r"file-000.parquet: column 'action' missing"):
        ds.column("action")


def test_asking_for_an_undeclared_feature(v30_copy):
    with pytest.raises(DatasetError, match=r"feature 'observation.velocity' not in the dataset"):
        open_dataset(v30_copy).column("observation.velocity")


def test_feature_shape_not_as_declared(v30_copy):
    _edit_info(v30_copy, lambda i: i["features"]["action"].update(shape=[4]))
    with pytest.raises(DatasetError, match=r"action: expected 4 values per frame .*given 81 "
                                           r"values for 27 frames"):
        open_dataset(v30_copy).column("action")


def test_feature_dtype_not_as_declared(v30_copy):
    def to_f64(t):
        a = np.asarray(t.column("action").combine_chunks().flatten(), np.float64)
        return _set_column(t, "action", pa.FixedSizeListArray.from_arrays(pa.array(a), 3))
    _edit_table(v30_copy / DATA, to_f64)
    with pytest.raises(DatasetError, match=r"action: expected dtype float32 as declared in "
                                           r"info.json, given float64"):
        open_dataset(v30_copy).column("action")


def test_truncated_parquet(v30_copy):
    p = v30_copy / DATA
    p.write_bytes(p.read_bytes()[: os.path.getsize(p) // 2])
    with pytest.raises(DatasetError, match=r"file-000.parquet: corrupt or truncated parquet"):
        open_dataset(v30_copy)


def test_data_file_missing_rows_of_an_episode(v30_copy):
    _edit_table(v30_copy / DATA, lambda t: t.slice(0, 20))  # episode 2 is rows 16..26
    with pytest.raises(DatasetError, match=r"episode 2, frame 4: row with index 20 missing"):
        open_dataset(v30_copy)


def test_missing_video(v30_copy):
    os.remove(v30_copy / VIDEO)
    with pytest.raises(DatasetError, match=r"file-000.mp4: video file missing"):
        open_dataset(v30_copy).frames(CAMERA, progress=False)


def test_short_video(v30_copy):
    from oat_edge.data.video import encode_video
    frames = open_dataset(v30_copy).frames(CAMERA, progress=False)
    encode_video(np.asarray(frames[:20]), str(v30_copy / VIDEO), 10)  # 7 frames short
    with pytest.raises(DatasetError, match=r"episode 2, frame 4: timestamp 2.0000 s is past "
                                           r"the video's last frame \(1.9000 s\)"):
        open_dataset(v30_copy).frames(CAMERA, progress=False)


def test_timestamps_outside_the_video(v30_copy):
    def shift(t):
        return _set_column(t, f"videos/{CAMERA}/from_timestamp",
                           pa.array([0.0, 0.7, 1.65]))  # episode 2 starts between frames
    _edit_table(v30_copy / EPISODES, shift)
    with pytest.raises(DatasetError, match=r"episode 2, frame 0: no frame at 1.6500 s"):
        open_dataset(v30_copy).frames(CAMERA, progress=False)


@pytest.mark.parametrize("key,bad", [("action", np.nan), ("observation.state", np.inf)])
def test_nan_or_inf_names_file_episode_and_frame(v30_copy, key, bad):
    def poison(t):
        a = t.column(key).combine_chunks()
        width = a.type.list_size
        x = np.asarray(a.flatten(), np.float32).reshape(-1, width).copy()
        x[9, 1] = bad  # episode 1 (rows 7..15), frame 2
        return _set_column(t, key, pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)),
                                                                     width))
    _edit_table(v30_copy / DATA, poison)
    with pytest.raises(DatasetError, match=rf"file-000.parquet, episode 1, frame 2: {key}: "
                                           rf"expected finite values, given NaN/Inf"):
        open_dataset(v30_copy).column(key)


def test_empty_dataset(v30_copy):
    _edit_table(v30_copy / EPISODES, lambda t: t.slice(0, 0))
    with pytest.raises(DatasetError, match=r"expected at least one episode .*empty dataset"):
        open_dataset(v30_copy)


def test_episode_metadata_missing(v30_copy):
    os.remove(v30_copy / EPISODES)
    with pytest.raises(DatasetError, match=r"meta/episodes: no chunk-\*/file-\*.parquet"):
        open_dataset(v30_copy)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match=r"meta/info.json: file missing"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"not found; expected a LeRobot dataset directory"):
        open_dataset(tmp_path / "nope")


def test_v21_episode_length_disagreeing_with_its_file(v21_copy):
    p = v21_copy / "data/chunk-000/episode_000001.parquet"
    _edit_table(p, lambda t: t.slice(0, 5))
    with pytest.raises(DatasetError, match=r"episode_000001.parquet, episode 1: expected 9 "
                                           r"frames \(episodes.jsonl\), given 5"):
        open_dataset(v21_copy)


def test_v21_nan_names_the_episode_file(v21_copy):
    p = v21_copy / "data/chunk-000/episode_000002.parquet"

    def poison(t):
        x = np.asarray(t.column("action").combine_chunks().flatten(), np.float32).copy()
        x[3 * 4] = np.nan  # frame 4
        return _set_column(t, "action", pa.FixedSizeListArray.from_arrays(pa.array(x), 3))
    _edit_table(p, poison)
    with pytest.raises(DatasetError, match=r"episode_000002.parquet, episode 2, frame 4: action"):
        open_dataset(v21_copy).column("action")
