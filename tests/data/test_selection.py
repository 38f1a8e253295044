"""Which arrays a policy trains on, picked out of a dataset."""
import numpy as np
import pytest
from data_fixtures import CAMERA, ROBOMIMIC, V30
from oat_edge.data import DatasetError, open_dataset
from oat_edge.data.selection import select_features


def test_defaults_are_every_state_feature_and_the_action():
    arr = select_features(V30, progress=False)
    ds = open_dataset(V30)
    np.testing.assert_array_equal(arr.state, ds.column("observation.state"))
    np.testing.assert_array_equal(arr.actions, ds.column("action"))
    assert arr.info["obs_keys"] == ["observation.state"]
    assert arr.info["obs_layout"] == "observation.state [6] followed by a one-hot over `tasks`"
    assert arr.info["fps"] == 10.0 and arr.tasks == ["pick up the cube", "open the drawer"]
    assert arr.info["dataset"]["cameras_not_used"] == [CAMERA]


def test_state_features_concatenate_in_the_order_given():
    arr = select_features(ROBOMIMIC, obs_keys=["obs/robot0_gripper_qpos", "obs/robot0_eef_pos"])
    ds = open_dataset(ROBOMIMIC)
    np.testing.assert_array_equal(arr.state, np.concatenate(
        [ds.column("obs/robot0_gripper_qpos"), ds.column("obs/robot0_eef_pos")], 1)
        .astype(np.float32))
    assert arr.state.dtype == np.float32 and arr.actions.shape == (22, 7)


def test_a_camera_in_obs_keys_is_refused_pointing_at_the_cameras_flag():
    with pytest.raises(DatasetError, match=r"these are cameras; --obs-keys names state features "
                                           r"only .*--obs-keys observation.state.*--cameras"):
        select_features(V30, obs_keys=["observation.state", CAMERA])


def test_unknown_keys_name_what_the_dataset_declares():
    with pytest.raises(DatasetError, match=r"feature 'observation.joints' not in the dataset"):
        select_features(V30, obs_keys=["observation.joints"])
    with pytest.raises(DatasetError, match=r"feature 'actions' not in the dataset"):
        select_features(V30, action_key="actions")


def test_declared_stats_give_the_normalizer_ranges():
    arr = select_features(V30, progress=False)
    ds = open_dataset(V30)
    lo, hi = arr.info["stats_ranges"]["action"]
    np.testing.assert_allclose(lo, ds.stats["action"]["min"])
    obs_lo, obs_hi = arr.info["stats_ranges"]["obs"]
    assert len(obs_lo) == 6 + 2 and obs_lo[-2:] == [0, 0] and obs_hi[-2:] == [1, 1]


def test_without_stats_there_are_no_declared_ranges():
    assert select_features(ROBOMIMIC).info["stats_ranges"] == {}


def test_short_episodes_are_skipped_and_counted():
    arr = select_features(V30, min_episode_frames=8, progress=False)  # episode 0 has 7 frames
    assert arr.info["dataset"]["skipped_short_episodes"] == 1
    np.testing.assert_array_equal(arr.episode_ends, [9, 20])
    np.testing.assert_array_equal(arr.actions, open_dataset(V30).column("action")[7:])
    with pytest.raises(DatasetError, match=r"every episode has fewer than 50 frames"):
        select_features(V30, min_episode_frames=50, progress=False)


def test_a_bad_video_fails_before_training_even_when_cameras_are_not_used(v30_copy):
    import os
    os.remove(v30_copy / f"videos/{CAMERA}/chunk-000/file-000.mp4")
    with pytest.raises(DatasetError, match="video file missing"):
        select_features(v30_copy, progress=False)
    # the tokenizer's actions-only path never opens the video
    assert select_features(v30_copy, actions_only=True).actions.shape == (27, 3)


def test_a_robomimic_filter_key_selects_the_training_demos():
    arr = select_features(ROBOMIMIC, filter_key="valid")
    assert arr.info["dataset"]["episodes"] == 1 and arr.actions.shape == (6, 7)
