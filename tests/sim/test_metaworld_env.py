import numpy as np
import pytest

pytest.importorskip("metaworld")

from oat_edge.sim.metaworld_env import MetaWorldEnv, expert_success_rate  # noqa: E402


def test_observation_is_history_of_state_plus_task_one_hot():
    env = MetaWorldEnv("push-v3", tasks=["reach-v3", "push-v3", "pick-place-v3"], n_obs_steps=2)
    obs = env.reset(seed=0)
    assert obs.shape == (2, 42) and obs.dtype == np.float32
    assert obs[:, 39:].tolist() == [[0, 1, 0]] * 2
    np.testing.assert_array_equal(obs[0], obs[1])  # padded by repeating the first obs
    first = obs[1].copy()
    obs = env.step(np.array([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(obs[0], first)   # oldest first
    assert not np.array_equal(obs[1, :39], first[:39])


def test_single_task_bundle_has_no_one_hot():
    env = MetaWorldEnv("reach-v3", tasks=[], n_obs_steps=3)
    assert env.reset(seed=1).shape == (3, 39)


def test_same_seed_gives_same_layout_and_different_seeds_differ():
    env = MetaWorldEnv("push-v3", n_obs_steps=1)
    a, b, c = env.reset(5), env.reset(6), env.reset(5)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_episode_ends_at_step_cap():
    env = MetaWorldEnv("reach-v3", n_obs_steps=1, max_steps=5)
    env.reset(0)
    for _ in range(5):
        env.step(np.zeros(4))
    assert env.done and env.steps == 5
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(np.zeros(4))


def test_expert_solves_reach():
    assert expert_success_rate("reach-v3", seeds=[0, 1]) == 1.0


def test_bad_task_and_layout_are_clear_errors():
    with pytest.raises(ValueError, match="not one of the bundle's tasks"):
        MetaWorldEnv("push-v3", tasks=["reach-v3"])
    with pytest.raises(ValueError, match="unknown Meta-World task"):
        MetaWorldEnv("no-such-task-v3")
    with pytest.raises(ValueError, match="obs_dim"):
        MetaWorldEnv("reach-v3", tasks=["reach-v3"], obs_dim=39)
