"""LeRobot readers against datasets written by lerobot itself (v3.0) and per the v2.1 layout."""
import os
import shutil

import numpy as np
import pytest
from data_fixtures import CAMERA, V21, V30
from oat_edge.data import DatasetError, open_dataset


def test_v30_written_by_lerobot_reads_with_equal_actions_states_and_boundaries(expected):
    ds = open_dataset(V30)
    assert ds.format == "lerobot v3.0" and ds.fps == float(expected["fps"])
    np.testing.assert_array_equal(ds.column("action"), expected["action"])
    np.testing.assert_array_equal(ds.column("observation.state"), expected["state"])
    np.testing.assert_array_equal(ds.episode_starts, expected["dataset_from_index"])
    np.testing.assert_array_equal(ds.episode_ends, expected["dataset_to_index"])
    ep, frame = ds.episode_of_row()
    np.testing.assert_array_equal(ep, expected["episode_index"])
    np.testing.assert_array_equal(frame, expected["frame_index"])


def test_v30_camera_frames_equal_lerobots_own_decode(expected):
    frames = open_dataset(V30).frames(CAMERA, progress=False)
    assert frames.dtype == np.uint8 and frames.shape == expected["frames"].shape
    np.testing.assert_array_equal(frames, expected["frames"])


def test_v30_task_strings_per_episode(expected):
    ds = open_dataset(V30)
    per_row = [ds.tasks[t] for t in np.repeat(ds.episode_task, ds.episode_lengths)]
    assert per_row == [str(t) for t in expected["task"]]
    assert ds.tasks == ["pick up the cube", "open the drawer"]


def test_v30_features_split_into_action_state_and_camera():
    ds = open_dataset(V30)
    assert ds.action_key == "action"
    assert ds.state_keys == ["observation.state"]
    assert ds.camera_keys == [CAMERA]
    assert ds.stats["action"]["min"] is not None


def test_v21_reads_the_same_content_as_v30(expected):
    ds = open_dataset(V21)
    assert ds.format == "lerobot v2.1"
    np.testing.assert_array_equal(ds.column("action"), expected["action"])
    np.testing.assert_array_equal(ds.column("observation.state"), expected["state"])
    np.testing.assert_array_equal(ds.episode_ends, expected["dataset_to_index"])
    assert ds.tasks == ["pick up the cube", "open the drawer"]
    # per-episode statistics merged: the global min is the min over episodes
    np.testing.assert_allclose(ds.stats["action"]["min"], expected["action"].min(0), rtol=1e-6)
    np.testing.assert_allclose(ds.stats["action"]["mean"], expected["action"].mean(0), rtol=1e-5)


def test_v21_frames_within_codec_error_of_the_source(expected):
    frames = open_dataset(V21).frames(CAMERA, progress=False)
    err = np.abs(frames.astype(np.int16) - expected["source_frames"].astype(np.int16))
    assert err.mean() < 8, err.mean()


def test_actions_never_touch_the_videos(v30_copy, v21_copy):
    for d in (v30_copy, v21_copy):
        shutil.rmtree(d / "videos")
        ds = open_dataset(d)
        assert ds.column("action").shape[0] == ds.num_frames
        with pytest.raises(DatasetError, match="video file missing"):
            ds.frames(CAMERA, progress=False)


def test_frames_are_decoded_once_and_cached(frame_cache, v30_copy):
    a = open_dataset(v30_copy).frames(CAMERA, progress=False)
    cached = list(frame_cache.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npy"
    assert isinstance(a, np.memmap) and not a.flags.writeable
    mtime = os.path.getmtime(cached[0])
    b = open_dataset(v30_copy).frames(CAMERA, progress=False)
    assert os.path.getmtime(cached[0]) == mtime
    np.testing.assert_array_equal(a, b)


def test_v30_episodes_spread_over_several_data_files(v30_copy, expected):
    import pyarrow as pa
    import pyarrow.parquet as pq
    data = v30_copy / "data/chunk-000/file-000.parquet"
    t = pq.read_table(data)
    pq.write_table(t.slice(0, 16), data)                     # episodes 0 and 1
    os.makedirs(v30_copy / "data/chunk-001")
    pq.write_table(t.slice(16), v30_copy / "data/chunk-001/file-003.parquet")  # episode 2
    ep_path = v30_copy / "meta/episodes/chunk-000/file-000.parquet"
    e = pq.read_table(ep_path)
    for col, v in (("data/chunk_index", [0, 0, 1]), ("data/file_index", [0, 0, 3])):
        e = e.set_column(e.column_names.index(col), col, pa.array(v, pa.int64()))
    pq.write_table(e, ep_path)
    ds = open_dataset(v30_copy)
    np.testing.assert_array_equal(ds.column("action"), expected["action"])
    np.testing.assert_array_equal(ds.frames(CAMERA, progress=False), expected["frames"])
    assert ds.source_of_row(20).endswith("chunk-001/file-003.parquet")


def test_reading_a_dataset_never_imports_torch(child_env):
    import subprocess
    import sys
    code = ("import sys; from oat_edge.data import open_dataset; "
            f"ds = open_dataset({V30!r}); ds.column('action'); "
            f"ds.frames({CAMERA!r}, progress=False); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
