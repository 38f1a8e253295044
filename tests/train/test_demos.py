
import numpy as np
import pytest
from oat_edge.train.demos import DemoFormatError, Demos, _get_env, generate_demos, load_demos, run_episode, save_demos


def _tiny_demos(n_steps=(5, 7), action_dim=4):
    ends = np.cumsum(n_steps).astype(np.int64)
    n = int(ends[-1])
    rng = np.random.default_rng(0)
    return Demos(obs=rng.normal(size=(n, 39)).astype(np.float32),
                 actions=rng.uniform(-1, 1, size=(n, action_dim)).astype(np.float32),
                 episode_ends=ends, episode_task=np.zeros(len(ends), np.int64),
                 task_names=["reach-v3"], meta={"seed": 0})


def test_generated_reach_episodes_end_exactly_at_first_success_and_round_trip(tmp_path):
    out = tmp_path / "demos.npz"
    s = generate_demos(["reach-v3"], 2, out, seed=3, workers=1, progress=False)
    assert s["episodes"] == 2 and s["expert"]["reach-v3"]["successes"] == 2
    d = load_demos(out)
    assert d.obs.shape == (s["steps"], 39) and d.obs.dtype == np.float32
    assert d.actions.shape == (s["steps"], 4) and d.actions.dtype == np.float32
    assert d.episode_ends.dtype == np.int64 and d.episode_ends[-1] == s["steps"]
    assert d.task_names == ["reach-v3"] and d.episode_task.tolist() == [0, 0]
    assert d.meta["metaworld_version"] and d.meta["expert"]["reach-v3"]["success_rate"] == 1.0
    assert np.all(np.abs(d.actions) <= 1.0)
    # replay the stored actions from the stored start: success first happens on the last step
    env, _ = _get_env("reach-v3")
    from oat_edge.train.demos import _episode_seed
    for e, sl in enumerate(d.episode_slices()):
        env.unwrapped.seed(_episode_seed(3, 0, e))
        obs, _ = env.reset()
        np.testing.assert_allclose(obs.astype(np.float32), d.obs[sl][0], atol=1e-6)
        succ = []
        for a in d.actions[sl]:
            obs, _, _, _, info = env.step(a)
            succ.append(info["success"] > 0.5)
        assert succ[-1] and not any(succ[:-1])


def test_two_episodes_with_same_seed_are_identical_and_different_seeds_differ():
    ok1, o1, a1, _ = run_episode("reach-v3", 11)
    ok2, o2, a2, _ = run_episode("reach-v3", 11)
    ok3, o3, _, _ = run_episode("reach-v3", 12)
    assert ok1 and ok2 and ok3
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(o1[0], o3[0])  # fresh random setup per seed


def test_unknown_task_name_is_rejected_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="no-such-task"):
        generate_demos(["no-such-task"], 1, tmp_path / "x.npz", workers=1, progress=False)


def test_load_demos_rejects_nan_in_observations_naming_field_and_row(tmp_path):
    d = _tiny_demos()
    d.obs[6, 3] = np.nan
    np.savez(tmp_path / "bad.npz", obs=d.obs, actions=d.actions, episode_ends=d.episode_ends,
             episode_task=d.episode_task, task_names=np.array(d.task_names), meta="{}")
    with pytest.raises(DemoFormatError, match=r"obs: expected finite values, given NaN/inf at row 6"):
        load_demos(tmp_path / "bad.npz")


def test_load_demos_rejects_wrong_action_dim(tmp_path):
    d = _tiny_demos(action_dim=3)
    np.savez(tmp_path / "bad.npz", obs=d.obs, actions=d.actions, episode_ends=d.episode_ends,
             episode_task=d.episode_task, task_names=np.array(d.task_names), meta="{}")
    with pytest.raises(DemoFormatError, match=r"actions: expected shape \[N, 4\], given \[12, 3\]"):
        load_demos(tmp_path / "bad.npz")


def test_load_demos_rejects_an_empty_dataset(tmp_path):
    np.savez(tmp_path / "empty.npz", obs=np.zeros((0, 39), np.float32),
             actions=np.zeros((0, 4), np.float32), episode_ends=np.zeros(0, np.int64),
             episode_task=np.zeros(0, np.int64), task_names=np.array(["reach-v3"]), meta="{}")
    with pytest.raises(DemoFormatError, match="non-empty"):
        load_demos(tmp_path / "empty.npz")


def test_load_demos_rejects_episode_ends_that_do_not_cover_all_steps(tmp_path):
    d = _tiny_demos()
    d.episode_ends = np.array([5, 11], np.int64)
    with pytest.raises(DemoFormatError, match="episode_ends"):
        save_demos(d, tmp_path / "bad.npz")


def test_save_then_load_preserves_arrays_and_meta(tmp_path):
    d = _tiny_demos()
    save_demos(d, tmp_path / "d.npz")
    e = load_demos(tmp_path / "d.npz")
    np.testing.assert_array_equal(d.obs, e.obs)
    np.testing.assert_array_equal(d.actions, e.actions)
    np.testing.assert_array_equal(d.episode_ends, e.episode_ends)
    assert e.meta == {"seed": 0} and e.task_names == ["reach-v3"]
    assert [(s.start, s.stop) for s in e.episode_slices()] == [(0, 5), (5, 12)]


def test_camera_demos_hold_each_cameras_frame_of_every_step_as_the_pixel_env_renders_it(tmp_path):
    from oat_edge.sim.camera import PixelMetaWorldEnv
    from oat_edge.train.demos import _episode_seed
    out = tmp_path / "pixels.npz"
    s = generate_demos(["reach-v3"], 1, out, seed=5, workers=1, progress=False,
                       cameras=["corner", "topview"], image_size=32)
    d = load_demos(out)
    assert d.cameras == ["corner", "topview"] and d.meta["cameras"] == ["corner", "topview"]
    for k in ("observation.images.corner", "observation.images.topview"):
        assert d.images[k].shape == (s["steps"], 32, 32, 3) and d.images[k].dtype == np.uint8
    assert load_demos(out, images=False).images == {}
    # the frame stored with step t is what PixelMetaWorldEnv shows before action t
    with PixelMetaWorldEnv("reach-v3", tasks=["reach-v3"], image_size=(32, 32)) as env:
        obs = env.reset(_episode_seed(5, 0, 0))
        for t in range(3):
            for k in d.images:
                np.testing.assert_array_equal(obs[k][-1], d.images[k][t], err_msg=f"{k} step {t}")
            np.testing.assert_array_equal(obs["observation.state"][-1, :4], d.obs[t, :4])
            obs = env.step(d.actions[t])


def test_unknown_camera_is_rejected_before_any_episode_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"cameras: \['nosuchcam'\] are not Meta-World cameras.*corner"):
        generate_demos(["reach-v3"], 1, tmp_path / "x.npz", workers=1, progress=False,
                       cameras=["corner", "nosuchcam"])
    assert not (tmp_path / "x.npz").exists()


def test_camera_frames_of_the_wrong_length_are_rejected_on_save_and_load(tmp_path):
    d = _tiny_demos()
    d.images = {"observation.images.corner": np.zeros((len(d.obs) - 1, 8, 8, 3), np.uint8)}
    with pytest.raises(DemoFormatError, match=r"observation.images.corner: expected uint8 \[12, H, W, 3\]"):
        save_demos(d, tmp_path / "bad.npz")
    d.images = {"observation.images.corner": np.zeros((len(d.obs), 8, 8, 3), np.float32)}
    np.savez(tmp_path / "bad.npz", obs=d.obs, actions=d.actions, episode_ends=d.episode_ends,
             episode_task=d.episode_task, task_names=np.array(d.task_names), meta="{}", **d.images)
    with pytest.raises(DemoFormatError, match=r"observation.images.corner: expected uint8.*given float32"):
        load_demos(tmp_path / "bad.npz")
