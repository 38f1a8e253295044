"""Meta-World environment wrapper that speaks the bundle's observation layout.

Observation for the policy: `[n_obs_steps, 39 + len(tasks)]` float32, each row the 39-d
Meta-World state followed by a one-hot of the task over the bundle's `tasks` list (no one-hot
when the list is empty). History is oldest first and padded after reset by repeating the first
observation. Each episode is seeded on its own (`seed` → the task's random object/goal layout),
so a policy and the scripted expert can be compared on the same layouts.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np

STATE_DIM = 39
MAX_STEPS = 500  # Meta-World's max_path_length


def _quiet():
    # The scripted experts and gymnasium's space checks emit many harmless UserWarnings.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def make_env(task: str):
    _quiet()
    try:
        import gymnasium as gym
        import metaworld  # noqa: F401 - registers the Meta-World/* ids
    except ImportError as exc:
        raise RuntimeError(f"Meta-World is not installed ({exc}); pip install metaworld==3.1.1 "
                           "packaging") from None
    try:
        env = gym.make("Meta-World/goal_observable", env_name=task, seed=0,
                       disable_env_checker=True)
    except Exception as exc:  # noqa: BLE001 - unknown task names surface as various errors
        raise ValueError(f"unknown Meta-World task {task!r}: {exc}") from None
    return env


class MetaWorldEnv:
    def __init__(self, task: str, tasks=(), n_obs_steps: int = 2, max_steps: int = MAX_STEPS,
                 obs_dim: int | None = None):
        tasks = list(tasks)
        if tasks and task not in tasks:
            raise ValueError(f"task {task!r} is not one of the bundle's tasks {tasks}")
        if not (isinstance(n_obs_steps, int) and n_obs_steps >= 1):
            raise ValueError(f"n_obs_steps must be an int >= 1, got {n_obs_steps!r}")
        if not (isinstance(max_steps, int) and 1 <= max_steps <= MAX_STEPS):
            raise ValueError(f"max_steps must be in 1..{MAX_STEPS}, got {max_steps!r}")
        self.obs_dim = STATE_DIM + len(tasks)
        if obs_dim is not None and obs_dim != self.obs_dim:
            raise ValueError(f"bundle obs_dim {obs_dim} != 39 + {len(tasks)} tasks = "
                             f"{self.obs_dim}: this bundle was not built for Meta-World states")
        self.task, self.tasks = task, tasks
        self.n_obs_steps, self.max_steps = n_obs_steps, max_steps
        self.one_hot = np.zeros(len(tasks), dtype=np.float32)
        if tasks:
            self.one_hot[tasks.index(task)] = 1.0
        self.env = make_env(task)
        self._mw = self.env.unwrapped
        self._mw._freeze_rand_vec = False
        # Layouts come from the env's own RNG, seeded per episode (the default global
        # np.random path would make episodes depend on everything else in the process).
        self._mw.seeded_rand_vec = True
        self.action_low = np.asarray(self.env.action_space.low, dtype=np.float64)
        self.action_high = np.asarray(self.env.action_space.high, dtype=np.float64)
        self._hist: deque = deque(maxlen=n_obs_steps)
        self.raw_obs: np.ndarray | None = None
        self.steps = 0
        self.success = False

    def _row(self, state: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(state, dtype=np.float32), self.one_hot])

    def reset(self, seed: int) -> np.ndarray:
        self._mw.seed(int(seed))
        state, _ = self.env.reset()
        self.raw_obs = state
        row = self._row(state)
        self._hist.clear()
        self._hist.extend([row] * self.n_obs_steps)
        self.steps, self.success = 0, False
        return self.observation()

    def observation(self) -> np.ndarray:
        """Policy input: [n_obs_steps, obs_dim] float32, oldest first."""
        if self.raw_obs is None:
            raise RuntimeError("call reset(seed) first")
        return np.stack(self._hist)

    @property
    def done(self) -> bool:
        return self.success or self.steps >= self.max_steps

    def step(self, action) -> np.ndarray:
        if self.done:
            raise RuntimeError("episode is over (success or step cap); call reset")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        state, _, _, _, info = self.env.step(a)
        self.raw_obs = state
        self.steps += 1
        self.success = self.success or bool(info.get("success", 0.0) >= 1.0)
        self._hist.append(self._row(state))
        return self.observation()

    def close(self) -> None:
        self.env.close()


def expert_episode(env: MetaWorldEnv, seed: int) -> bool:
    """One episode of the task's scripted expert on layout `seed`; True on success."""
    from metaworld.policies import ENV_POLICY_MAP
    expert = ENV_POLICY_MAP[env.task]()
    env.reset(seed)
    while not env.done:
        env.step(expert.get_action(env.raw_obs))
    return env.success


def expert_success_rate(task: str, seeds) -> float:
    env = MetaWorldEnv(task)
    try:
        seeds = list(seeds)
        return sum(expert_episode(env, s) for s in seeds) / len(seeds)
    finally:
        env.close()
