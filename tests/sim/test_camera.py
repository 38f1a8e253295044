import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("metaworld")

from oat_edge.sim.camera import PixelMetaWorldEnv  # noqa: E402

TASKS = ["reach-v3", "push-v3", "pick-place-v3"]


@pytest.fixture(scope="module")
def env():
    e = PixelMetaWorldEnv("push-v3", tasks=TASKS, cameras=("corner", "topview"), image_size=(48, 64),
                          n_obs_steps=2)
    yield e
    e.close()


def _goal_pixels(env, camera):
    """Pixels that change when the goal marker is hidden: where the simulator draws the goal."""
    model = env.state_env._mw.model
    goal = model.site("goal").id
    shown = env.renderer.render(camera).astype(int)
    rgba = model.site_rgba[goal].copy()
    model.site_rgba[goal, 3] = 0.0
    try:
        hidden = env.renderer.render(camera).astype(int)
    finally:
        model.site_rgba[goal] = rgba
    return np.argwhere(np.abs(shown - hidden).sum(-1) > 30)


def test_observation_is_named_uint8_channels_last_frames_and_robot_state(env):
    obs = env.reset(seed=0)
    assert list(obs) == env.keys == ["observation.state", "observation.images.corner",
                                     "observation.images.topview"]
    for cam in ("corner", "topview"):
        img = obs[f"observation.images.{cam}"]
        assert img.shape == (2, 48, 64, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
        np.testing.assert_array_equal(img[0], img[1])  # padded by repeating the first frame
        assert img.std() > 10  # a scene, not a blank buffer
    state = obs["observation.state"]
    assert state.shape == (2, 4 + 3) and state.dtype == np.float32
    # End-effector xyz and gripper opening, then the task one-hot; no object or goal positions.
    np.testing.assert_array_equal(state[1, :4], env.raw_obs[:4].astype(np.float32))
    assert state[1, 4:].tolist() == [0, 1, 0]


def test_history_is_oldest_first_and_frames_follow_the_arm(env):
    first = env.reset(seed=0)
    obs = env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    for _ in range(5):
        obs = env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    before = env.observation()["observation.images.corner"][1].copy()
    obs = env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    np.testing.assert_array_equal(obs["observation.images.corner"][0], before)
    assert not np.array_equal(obs["observation.images.corner"][1], before)
    assert obs["observation.state"][1, 2] > first["observation.state"][1, 2]  # the hand went up


def test_steps_without_frames_are_skipped_until_an_observation_needs_them(env):
    env.reset(seed=1)
    for _ in range(3):
        assert env.step(np.array([0.5, 0.0, 0.0, 0.0]), render=False) is None
    with pytest.raises(RuntimeError, match="render=False"):
        env.observation()
    # 1 of the 2 history frames: still not enough
    assert env.step(np.array([0.5, 0.0, 0.0, 0.0])) is None
    with pytest.raises(RuntimeError, match="last 2 steps"):
        env.observation()
    obs = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
    assert obs["observation.images.corner"].shape == (2, 48, 64, 3)
    # The skipped steps still moved the arm: same frame as a run that rendered every step.
    env.reset(seed=1)
    for _ in range(5):
        full = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(full["observation.images.corner"], obs["observation.images.corner"])


def test_same_seed_renders_the_same_frames_and_other_seeds_differ(env):
    a = env.reset(3)["observation.images.topview"].copy()
    b = env.reset(4)["observation.images.topview"].copy()
    c = env.reset(3)["observation.images.topview"]
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("task", TASKS)
def test_the_first_frame_of_an_episode_draws_its_own_goal_not_the_previous_episodes(task):
    with PixelMetaWorldEnv(task, cameras=("corner", "topview"), image_size=(64, 64)) as e, \
            PixelMetaWorldEnv(task, cameras=("corner", "topview"), image_size=(64, 64)) as fresh:
        e.reset(1)
        e.step(np.zeros(4))
        after = e.reset(2)
        first = fresh.reset(2)
        goal = fresh.state_env._mw._target_pos
        for k in first:
            np.testing.assert_array_equal(after[k], first[k], err_msg=k)
        # the marker sits at the episode's goal (Meta-World moves it there only when stepping)
        np.testing.assert_allclose(fresh.state_env._mw.data.site("goal").xpos, goal, atol=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_the_goal_is_drawn_so_it_stays_out_of_the_state(task):
    with PixelMetaWorldEnv(task, cameras=("corner",), image_size=(64, 64)) as e:
        for seed in range(3):
            e.reset(seed)
            assert len(_goal_pixels(e, "corner")) >= 1, f"{task} seed {seed}: goal not visible"
            assert e.observation()["observation.state"].shape == (2, 4)


def test_world_up_is_image_up_in_every_oblique_camera():
    cams = ("corner", "corner2", "corner3")
    with PixelMetaWorldEnv("reach-v3", cameras=cams, image_size=(96, 96)) as e:
        e.reset(0)
        data = e.state_env._mw.data
        for cam in cams:
            rows = []
            for z in (0.05, 0.3):  # move the goal marker straight up
                data.site("goal").xpos = [0.0, 0.75, z]
                px = _goal_pixels(e, cam)
                assert len(px), f"{cam}: goal marker not in view at z={z}"
                rows.append(px[:, 0].mean())
            assert rows[1] < rows[0], f"{cam}: a higher point is drawn lower (image upside down)"


def test_bad_camera_and_size_are_clear_errors():
    with pytest.raises(ValueError, match=r"\['wrist'\] not in this model; it has .*corner"):
        PixelMetaWorldEnv("reach-v3", cameras=("corner", "wrist"))
    with pytest.raises(ValueError, match="height: expected an int in 8..480"):
        PixelMetaWorldEnv("reach-v3", image_size=(1000, 64))
    with pytest.raises(ValueError, match="image_size"):
        PixelMetaWorldEnv("reach-v3", image_size=64)
    with pytest.raises(ValueError, match="width: expected an int"):
        PixelMetaWorldEnv("reach-v3", image_size=(64, 64.5))
    with pytest.raises(ValueError, match="distinct"):
        PixelMetaWorldEnv("reach-v3", cameras=("corner", "corner"))


def test_renders_headless_whatever_back_end_mujoco_was_imported_with(child_env):
    # metaworld imports mujoco first; MUJOCO_GL=glfw would make mujoco.Renderer need a display.
    code = ("import metaworld, numpy as np; from oat_edge.sim.camera import PixelMetaWorldEnv\n"
            "with PixelMetaWorldEnv('reach-v3', image_size=(16, 16)) as e:\n"
            "    print(int(e.reset(0)['observation.images.corner'].std() > 10))")
    env = {k: v for k, v in child_env.items() if k != "DISPLAY"}
    r = subprocess.run([sys.executable, "-c", code], env=dict(env, MUJOCO_GL="glfw"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "1"
    assert "Error" not in r.stderr  # and no EGL teardown noise at exit
