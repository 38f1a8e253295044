"""robomimic-layout HDF5 reader against the h5py-written fixture."""
import h5py
import numpy as np
import pytest
from data_fixtures import ROBOMIMIC
from oat_edge.data import DatasetError, open_dataset


def test_demos_in_numeric_order_with_their_actions_and_observations():
    ds = open_dataset(ROBOMIMIC)
    assert ds.format == "robomimic hdf5" and ds.fps == 20.0
    np.testing.assert_array_equal(ds.episode_ids, [1, 2, 10])
    with h5py.File(ROBOMIMIC, "r") as f:
        want = np.concatenate([f[f"data/demo_{i}/actions"][()] for i in (1, 2, 10)])
        eef = np.concatenate([f[f"data/demo_{i}/obs/robot0_eef_pos"][()] for i in (1, 2, 10)])
        img = np.concatenate([f[f"data/demo_{i}/obs/agentview_image"][()] for i in (1, 2, 10)])
    np.testing.assert_array_equal(ds.column("actions"), want)
    np.testing.assert_array_equal(ds.column("obs/robot0_eef_pos"), eef)
    np.testing.assert_array_equal(ds.frames("obs/agentview_image"), img)
    np.testing.assert_array_equal(ds.episode_lengths, [7, 6, 9])


def test_feature_kinds_and_task():
    ds = open_dataset(ROBOMIMIC)
    assert ds.action_key == "actions"
    assert ds.state_keys == ["obs/robot0_eef_pos", "obs/robot0_gripper_qpos"]  # not `states`
    assert ds.camera_keys == ["obs/agentview_image"]
    assert ds.tasks == ["Lift"]


def test_filter_key_selects_the_masked_demos():
    ds = open_dataset(ROBOMIMIC, filter_key="train")
    np.testing.assert_array_equal(ds.episode_ids, [1, 10])
    assert ds.num_frames == 16


def test_unknown_filter_key_names_the_ones_present():
    with pytest.raises(DatasetError, match=r"mask/test missing.*\['train', 'valid'\]"):
        open_dataset(ROBOMIMIC, filter_key="test")


def test_num_samples_disagreeing_with_actions_names_the_demo(tmp_path):
    p = tmp_path / "bad.hdf5"
    with h5py.File(ROBOMIMIC, "r") as src, h5py.File(p, "w") as dst:
        src.copy("data", dst)
        dst["data/demo_2"].attrs["num_samples"] = 99
    with pytest.raises(DatasetError, match=r"episode 1 \(demo_2\): num_samples 99"):
        open_dataset(p)
