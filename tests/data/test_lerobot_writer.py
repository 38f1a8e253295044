"""Writer -> reader round trip, and the writer's all-or-nothing behaviour."""
import os

import numpy as np
import pytest
from data_fixtures import smooth_frames
from oat_edge.data import DatasetError, open_dataset
from oat_edge.data.lerobot_writer import write_lerobot


def _episodes(lengths=(12, 5, 9), camera=True):
    rng = np.random.default_rng(7)
    eps = []
    for e, n in enumerate(lengths):
        ep = {"observation.state": rng.normal(size=(n, 39)).astype(np.float32),
              "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
              "task": ("reach-v3", "push-v3")[e % 2]}
        if camera:
            ep["observation.images.corner"] = smooth_frames(n, 32, seed=e)
        eps.append(ep)
    return eps


def test_round_trip_is_bit_exact_for_states_and_actions_and_close_for_frames(tmp_path):
    eps = _episodes()
    write_lerobot(tmp_path / "ds", 80, eps, robot_type="sawyer")
    ds = open_dataset(tmp_path / "ds")
    assert ds.format == "lerobot v3.0" and ds.fps == 80.0
    for key in ("observation.state", "action"):
        np.testing.assert_array_equal(ds.column(key), np.concatenate([e[key] for e in eps]))
    np.testing.assert_array_equal(ds.episode_lengths, [12, 5, 9])
    assert ds.tasks == ["reach-v3", "push-v3"]
    np.testing.assert_array_equal(ds.episode_task, [0, 1, 0])
    src = np.concatenate([e["observation.images.corner"] for e in eps]).astype(np.int16)
    err = np.abs(ds.frames("observation.images.corner", progress=False).astype(np.int16) - src)
    assert err.mean() < 8 and np.percentile(err, 99) < 40, (err.mean(), np.percentile(err, 99))
    # declared stats are the data's
    np.testing.assert_allclose(ds.stats["action"]["max"], np.concatenate(
        [e["action"] for e in eps]).max(0), rtol=1e-6)


def test_round_trip_of_meta_world_demos_keeps_every_value(tmp_path):
    from oat_edge.train.demos import Demos, save_lerobot
    rng = np.random.default_rng(0)
    demos = Demos(obs=rng.normal(size=(30, 39)).astype(np.float32),
                  actions=rng.uniform(-1, 1, (30, 4)).astype(np.float32),
                  episode_ends=np.array([10, 18, 30]), episode_task=np.array([0, 1, 1]),
                  task_names=["reach-v3", "push-v3"], meta={"seed": 1})
    save_lerobot(demos, tmp_path / "mw")
    ds = open_dataset(tmp_path / "mw")
    np.testing.assert_array_equal(ds.column("observation.state"), demos.obs)
    np.testing.assert_array_equal(ds.column("action"), demos.actions)
    np.testing.assert_array_equal(ds.episode_ends, demos.episode_ends)
    np.testing.assert_array_equal(ds.episode_task, demos.episode_task)
    assert ds.tasks == demos.task_names and ds.fps == 80.0  # Meta-World: 1 / (5 x 2.5 ms)


def test_existing_directory_is_left_alone_without_overwrite(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="already exists"):
        write_lerobot(tmp_path / "ds", 10, _episodes(camera=False))
    assert os.listdir(tmp_path / "ds") == ["mine.txt"]


def test_failed_write_leaves_no_partial_dataset_and_keeps_the_old_one(tmp_path):
    write_lerobot(tmp_path / "ds", 10, _episodes(camera=False))
    before = sorted(os.listdir(tmp_path / "ds" / "meta"))
    bad = _episodes(camera=False)
    bad[1]["action"] = bad[1]["action"][:-1]  # one frame short
    with pytest.raises(DatasetError, match="episode 1"):
        write_lerobot(tmp_path / "ds", 10, bad, overwrite=True)
    assert sorted(os.listdir(tmp_path / "ds" / "meta")) == before
    assert open_dataset(tmp_path / "ds").num_frames == 26
    assert sorted(os.listdir(tmp_path)) == ["ds", "frame_cache"] or \
        sorted(os.listdir(tmp_path)) == ["ds"]


def test_no_episodes_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="at least one episode"):
        write_lerobot(tmp_path / "ds", 10, [])
    assert not (tmp_path / "ds").exists()
