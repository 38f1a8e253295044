"""The simulator a bundle is evaluated in, and how a camera bundle's observations reach the loop.

A state bundle (no `observation` block in its manifest) sees `MetaWorldEnv`: the 39-d state and
the task one-hot, one [n_obs_steps, obs_dim] array. A named-input (camera) bundle sees
`PixelMetaWorldEnv`, configured from the bundle's observation spec (cameras, image size,
n_obs_steps); its state must be that environment's (end-effector xyz, gripper opening, one-hot
over the bundle's tasks), so a bundle trained on another robot's data is refused, saying why.

Rendering is most of a pixel step's cost and a replan reads only the frames of the last
n_obs_steps steps, so `PixelEvalEnv` draws a frame only when a replan may read it.

`ControlLoop` checks each observation as one numeric array. A camera observation is a dict of
arrays, so the loop carries a key to it (a [1, 1] array) and `NamedInputPolicy` hands the dict
itself to `policy.act`, untouched: uint8 frames reach the runtime without a copy, and the loop's
act() latency is the runtime's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..control import info_bounds

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ROBOT_STATE_DIM = 4  # end-effector xyz + gripper opening (PixelMetaWorldEnv's observation.state)


def observation_spec(info) -> dict | None:
    """The bundle's observation spec (ObservationSpec.to_dict()), or None for a state bundle.
    info: PolicyInfo, or a dict with the same fields."""
    return info.get("observation")


@dataclass(frozen=True)
class PixelLayout:
    """What PixelMetaWorldEnv must produce for a camera bundle."""
    keys: tuple[str, ...]          # the spec's input names, in spec order
    cameras: tuple[str, ...]
    image_size: tuple[int, int]    # (height, width), one for every camera
    n_obs_steps: int


def pixel_layout(spec: dict, tasks) -> PixelLayout:
    """Check that a camera bundle's spec is a Meta-World-from-pixels observation; raise a
    ValueError naming the mismatch otherwise."""
    inputs = spec.get("inputs") or []
    keys = tuple(i["name"] for i in inputs)
    cams = [i for i in inputs if i["name"].startswith(IMAGE_PREFIX)]
    if not cams:
        raise ValueError(f"this bundle's inputs {list(keys)} hold no camera: oat-edge eval runs "
                         "state bundles (one 'obs' input) and camera bundles in Meta-World")
    sizes = {tuple(int(x) for x in c["shape"][:2]) for c in cams}
    if len(sizes) != 1:
        shapes = ", ".join(f"{c['name']} {list(c['shape'])}" for c in cams)
        raise ValueError("Meta-World from pixels renders every camera at one size; this bundle's "
                         f"cameras are {shapes}")
    want = ROBOT_STATE_DIM + len(tasks)
    for i in inputs:
        if i["name"] == STATE_KEY and list(i["shape"]) != [want]:
            raise ValueError(
                f"{STATE_KEY} of this bundle has shape {list(i['shape'])}, but Meta-World seen "
                f"through cameras gives [{want}]: end-effector xyz (3), gripper opening (1) and a "
                f"one-hot over the bundle's {len(tasks)} tasks. The bundle was trained on another "
                "robot's observations, so it cannot be evaluated in Meta-World")
    return PixelLayout(keys, tuple(c["name"][len(IMAGE_PREFIX):] for c in cams), sizes.pop(),
                       int(spec["n_obs_steps"]))


def replan_within(loop, cycles: int) -> bool:
    """Between two cycles: may `loop` read an observation in the next `cycles` cycles?

    While a chunk is in flight: yes (it may land short and be replaced at once). Otherwise no
    chunk lands before the next replan, so the queue shrinks by one action per cycle and the
    loop replans once it holds no more than its lead (ControlLoop.replan_lead, fixed until the next
    chunk lands): exactly then."""
    if not loop.worker.idle:
        return True
    return len(loop.queue) - (cycles - 1) <= loop.replan_lead()


class PixelEvalEnv:
    """PixelMetaWorldEnv as ControlLoop drives it in an evaluation.

    observation() returns the key of the newest observation dict (`lookup(key)` gives the dict);
    step(action) only takes the action: `after_cycle(loop)` applies it once the cycle is over,
    when the loop's state says whether a replan may read the frame it leads to (drawn then, and
    skipped otherwise). Counts: frames_rendered / frames_skipped of the steps taken, and
    frames_refused (an observation asked for a skipped frame; 0 unless the rule above is wrong,
    and then the next n_obs_steps frames are drawn so the loop can go on)."""

    def __init__(self, task: str, tasks, layout: PixelLayout):
        from ..sim.camera import PixelMetaWorldEnv
        self.env = PixelMetaWorldEnv(task, tasks=tasks, cameras=layout.cameras,
                                     image_size=layout.image_size, n_obs_steps=layout.n_obs_steps)
        self.task, self.layout = task, layout
        self.action_low, self.action_high = self.env.action_low, self.env.action_high
        self.max_steps = self.env.state_env.max_steps
        self.frames_rendered = self.frames_skipped = self.frames_refused = 0
        self.last_read: dict | None = None  # the observation the policy read last
        self._obs: dict[int, dict] = {}
        self._next_key = 0
        self._action = None
        self._force = 0

    # the loop's view
    def reset(self, seed: int) -> np.ndarray:
        self._action, self._force = None, 0
        return self._store(self.env.reset(seed))

    def observation(self) -> np.ndarray:
        try:
            obs = self.env.observation()
        except RuntimeError:
            self.frames_refused += 1
            self._force = self.layout.n_obs_steps
            raise
        return self._store(obs)

    def step(self, action) -> None:
        self._action = np.array(action, dtype=np.float64, copy=True)

    def after_cycle(self, loop) -> None:
        if self._action is None:
            return
        render = self._force > 0 or replan_within(loop, self.layout.n_obs_steps)
        self._force = max(0, self._force - 1)
        action, self._action = self._action, None
        self.env.step(action, render=render)
        self.frames_rendered += render
        self.frames_skipped += not render

    def lookup(self, key) -> dict:
        k = int(np.asarray(key).reshape(-1)[0])
        if k not in self._obs:
            raise KeyError(f"observation key {k} is not one of the newest {sorted(self._obs)}")
        return self._obs[k]

    def _store(self, obs: dict) -> np.ndarray:
        d = {name: obs[name] for name in self.layout.keys}
        key, self._next_key = self._next_key, self._next_key + 1
        self._obs[key] = self.last_read = d
        self._obs.pop(key - 4, None)  # the loop plans from what it just read: keep a few
        return np.array([[key]], dtype=np.float64)

    # the episode's state
    @property
    def steps(self) -> int:
        return self.env.steps

    @property
    def success(self) -> bool:
        return self.env.success

    @property
    def done(self) -> bool:
        return self.env.done

    @property
    def sim(self):
        """The MuJoCo model and data (for a display camera)."""
        return self.env.renderer.model, self.env.renderer.data

    def close(self) -> None:
        self.env.close()


class NamedInputPolicy:
    """A camera bundle's policy as the loop drives it: act(key) -> policy.act(the dict)."""

    def __init__(self, policy, env: PixelEvalEnv):
        self.policy, self.env = policy, env
        info = policy.info
        low, high = info_bounds(policy)
        # obs_dim is left out: the loop's observation is a key, not the policy's input
        self.info = {name: info[name] for name in ("horizon", "action_dim", "n_action_steps",
                                                   "num_tokens")}
        self.info.update(action_low=low, action_high=high)

    def check_options(self, **options) -> None:
        check = getattr(self.policy, "check_options", None)
        if callable(check):
            check(**options)

    def act(self, key, **kwargs):
        return self.policy.act(self.env.lookup(key), **kwargs)


def eval_env(task: str, policy):
    """(environment, policy as the loop drives it) for evaluating `policy` on `task`."""
    from ..sim.metaworld_env import MetaWorldEnv
    info = policy.info
    tasks = list(info.get("tasks") or [])
    spec = observation_spec(info)
    if spec is None:
        env = MetaWorldEnv(task, tasks=tasks, n_obs_steps=int(info["n_obs_steps"]),
                           obs_dim=int(info["obs_dim"]))
        loop_policy = policy
    else:
        env = PixelEvalEnv(task, tasks, pixel_layout(spec, tasks))
        loop_policy = NamedInputPolicy(policy, env)
    if int(info["action_dim"]) != len(env.action_low):
        env.close()
        raise ValueError(f"this bundle's actions have {info['action_dim']} values, Meta-World's "
                         f"{len(env.action_low)} (end-effector xyz, gripper): it is not a Meta-World "
                         "policy")
    return env, loop_policy


def simulation(env):
    """(model, data) of an evaluation environment's MuJoCo simulation."""
    if hasattr(env, "sim"):
        return env.sim
    mw = env.env.unwrapped
    return mw.model, mw.data
