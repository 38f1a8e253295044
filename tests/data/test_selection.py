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


# -- cameras ---------------------------------------------------------------------------------------

def test_cameras_are_asked_for_by_name_or_key_and_named_as_policy_inputs():
    ds = open_dataset(ROBOMIMIC)
    for asked in (["agentview"], ["obs/agentview_image"], "all"):
        arr = select_features(ROBOMIMIC, cameras=asked)
        assert list(arr.frames) == ["observation.images.agentview"]
        np.testing.assert_array_equal(arr.frames["observation.images.agentview"],
                                      ds.frames("obs/agentview_image"))
        assert arr.info["camera_keys"] == {"observation.images.agentview": "obs/agentview_image"}
    v30 = select_features(V30, cameras=["front"], progress=False)
    assert list(v30.frames) == [CAMERA] and v30.frames[CAMERA].shape[0] == v30.actions.shape[0]
    assert v30.info["dataset"]["cameras_not_used"] == []


def test_camera_frames_follow_the_rows_kept_when_short_episodes_are_skipped():
    arr = select_features(V30, cameras="all", min_episode_frames=8, progress=False)
    np.testing.assert_array_equal(arr.frames[CAMERA], open_dataset(V30).frames(CAMERA, progress=False)[7:])


def test_an_unknown_camera_lists_the_cameras_there_are():
    with pytest.raises(DatasetError, match=r"camera 'wrist': not in the dataset; its cameras: "
                                           r"\['obs/agentview_image \(agentview\)'\]"):
        select_features(ROBOMIMIC, cameras=["wrist"])


def test_a_state_feature_asked_for_as_a_camera_says_what_it_is():
    with pytest.raises(DatasetError, match=r"'obs/robot0_eef_pos': expected a camera \(uint8 frames "
                                           r"\[H, W, 3\] or a video\), given dtype float64 shape \[3\]"):
        select_features(ROBOMIMIC, cameras=["obs/robot0_eef_pos"])


def test_all_cameras_of_a_dataset_without_cameras_is_an_error(tmp_path):
    _robomimic(tmp_path / "nocam.hdf5", image=lambda name, n: None)
    with pytest.raises(DatasetError, match=r"expected camera features for a camera policy, the dataset has none"):
        select_features(tmp_path / "nocam.hdf5", cameras="all")


def test_a_camera_policy_reads_the_robots_own_state_by_default(tmp_path):
    from oat_edge.train.demos import Demos, save_lerobot
    n = 12
    rng = np.random.default_rng(0)
    frames = np.zeros((n, 16, 16, 3), np.uint8)
    demos = Demos(obs=rng.normal(size=(n, 39)).astype(np.float32),
                  actions=rng.uniform(-1, 1, (n, 4)).astype(np.float32),
                  episode_ends=np.array([5, 12]), episode_task=np.array([0, 0]),
                  task_names=["reach-v3"], meta={}, images={"observation.images.corner": frames})
    save_lerobot(demos, tmp_path / "mw")
    # the Meta-World demos split LeRobot's way: the robot's state apart from the simulator's
    cam = select_features(tmp_path / "mw", cameras="all", progress=False)
    assert cam.info["obs_keys"] == ["observation.state"]
    np.testing.assert_allclose(cam.state, demos.obs[:, :4])
    state = select_features(tmp_path / "mw", obs_keys=["observation.environment_state"], progress=False)
    np.testing.assert_allclose(state.state, demos.obs)
    # robomimic: the obs/robot* features
    rm = select_features(ROBOMIMIC, cameras="all")
    assert rm.info["obs_keys"] == ["obs/robot0_eef_pos", "obs/robot0_gripper_qpos"]


def _robomimic(path, image=lambda name, n: np.zeros((n, 8, 8, 3), np.uint8)):
    import h5py
    with h5py.File(path, "w") as f:
        for name, n in (("demo_0", 5), ("demo_1", 4)):
            g = f.create_group(f"data/{name}")
            g.attrs["num_samples"] = n
            g["actions"] = np.zeros((n, 2))
            g["obs/robot0_eef_pos"] = np.zeros((n, 3))
            x = image(name, n)
            if x is not None:
                g["obs/agentview_image"] = x


@pytest.mark.parametrize("image, match", [
    (lambda name, n: None if name == "demo_1" else np.zeros((n, 8, 8, 3), np.uint8),
     r"episode 1.*\(demo_1\): feature 'obs/agentview_image' missing"),
    (lambda name, n: np.zeros((n + (name == "demo_1"), 8, 8, 3), np.uint8),
     r"\(demo_1\): obs/agentview_image: expected 4 frames \(num_samples / actions\), given 5"),
    (lambda name, n: np.zeros((n, 8, 8, 3), np.uint8 if name == "demo_0" else np.float32),
     r"obs/agentview_image: expected uint8 frames, given float32"),
    (lambda name, n: np.zeros((n, 8, 8, 3), np.float32),
     r"'obs/agentview_image': expected a camera \(uint8 frames \[H, W, 3\] or a video\), given dtype "
     r"float32 shape \[8, 8, 3\]; its cameras: none"),
])
def test_bad_robomimic_camera_frames_are_named_before_training(tmp_path, image, match):
    _robomimic(tmp_path / "bad.hdf5", image)
    with pytest.raises(DatasetError, match=match):
        select_features(tmp_path / "bad.hdf5", cameras=["obs/agentview_image"])
