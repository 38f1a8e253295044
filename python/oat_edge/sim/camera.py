"""Camera frames from a MuJoCo simulation, rendered headless on Mesa's software EGL, and a
Meta-World environment that observes through them.

Rendering: an offscreen EGL context (OSMesa with MUJOCO_GL=osmesa) made here, whatever back-end
mujoco itself was imported with, with shadows, reflections and multisampling off: on a software
rasterizer they cost several times the frame and add nothing a 64x64 policy can use. Frames are
uint8 [H, W, 3], C-order, channels last, turned so the world's up is at the top of the image
(several Meta-World cameras are defined upside down).

`PixelMetaWorldEnv` returns the observation a robot would have, under LeRobot's feature keys:
    observation.state            float32 [n_obs_steps, 4 + len(tasks)]  end-effector xyz, gripper
                                                                        opening, task one-hot
    observation.images.<camera>  uint8   [n_obs_steps, H, W, 3]
Object and goal positions are not in the state: the goal is drawn by the simulator (a coloured
sphere) and the objects are visible, so both must come from the camera.
"""

from __future__ import annotations

import atexit
import numbers
import os

import numpy as np

from oat_edge.sim.metaworld_env import MAX_STEPS, STATE_DIM, MetaWorldEnv

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ROBOT_STATE_DIM = 4  # end-effector xyz + gripper opening: Meta-World state[0:4]
# With topview beside corner, a trained encoder places the goal about three times more precisely
# than from corner alone; 64x64 keeps the goal marker at 2-5 pixels (docs/CAMERAS.md measures both).
DEFAULT_CAMERAS = ("corner", "topview")
DEFAULT_SIZE = (64, 64)
# The offscreen buffer of Meta-World's models (vis.global offwidth/offheight).
MAX_WIDTH, MAX_HEIGHT = 640, 480


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def place_target_sites(mw) -> None:
    """Draw a Meta-World env's goal markers where its goal is. Meta-World writes the marker
    sites' positions after every step (the physics step recomputes them from the model), but not
    on reset: without this the first frame of an episode shows the previous episode's goal."""
    for name, pos in getattr(mw, "_target_site_config", ()):
        mw._set_pos_site(name, pos)


def _headless_gl_context(width: int, height: int):
    """An offscreen GL context: EGL (Mesa's software driver on a CPU machine), or OSMesa when
    MUJOCO_GL=osmesa. Made here rather than through mujoco.Renderer, whose back-end is fixed by
    MUJOCO_GL at the moment mujoco is first imported (by anything, e.g. metaworld)."""
    try:
        if os.environ.get("MUJOCO_GL", "").lower() == "osmesa":
            from mujoco.osmesa import GLContext
        else:
            from mujoco.egl import GLContext
        return GLContext(width, height)
    except Exception as exc:  # noqa: BLE001 - EGL/GL failures surface as many types
        raise RuntimeError(
            f"headless rendering failed ({type(exc).__name__}: {exc}); it needs Mesa's EGL driver "
            "(apt-get install libegl1 libopengl0 libegl-mesa0 libgl1-mesa-dri; scripts/setup.sh "
            "does) and PYOPENGL_PLATFORM unset or 'egl'") from exc


class CameraRenderer:
    """Renders named cameras of one MuJoCo model at one resolution. Owns a GL context: call
    close() when done (also done at interpreter exit, before the EGL display goes away)."""

    def __init__(self, model, data, cameras, height: int = 64, width: int = 64):
        import mujoco

        cameras = list(cameras)
        if not cameras or not all(isinstance(c, str) and c for c in cameras):
            raise ValueError(f"cameras: expected a non-empty list of camera names, got {cameras!r}")
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras: expected distinct names, got {cameras}")
        names = [model.camera(i).name for i in range(model.ncam)]
        unknown = [c for c in cameras if c not in names]
        if unknown:
            raise ValueError(f"cameras: {unknown} not in this model; it has {names}")
        for what, v, hi in (("height", height, MAX_HEIGHT), ("width", width, MAX_WIDTH)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 8 <= v <= hi:
                raise ValueError(f"{what}: expected an int in 8..{hi} pixels, got {v!r}")
        height, width = int(height), int(width)
        self._mj, self.model, self.data = mujoco, model, data
        self.cameras, self.height, self.width = cameras, height, width
        self._mjr = None
        self._gl = _headless_gl_context(width, height)
        self._gl.make_current()
        # Multisampling is fixed when the offscreen buffer is made; shadows and reflections are
        # scene flags.
        model.vis.quality.offsamples = 0
        self._mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr)
        atexit.register(self.close)  # runs before mujoco.egl's own exit hook terminates EGL
        self._scene = mujoco.MjvScene(model, maxgeom=10_000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._option, self._pert = mujoco.MjvOption(), mujoco.MjvPerturb()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.empty((height, width, 3), dtype=np.uint8)
        self._ids = {c: model.camera(c).id for c in cameras}
        mujoco.mj_forward(model, data)
        self.upside_down = {c: self._upside_down(c) for c in cameras}

    def _upside_down(self, camera: str) -> bool:
        # A camera's image-up axis is the second column of its world frame (cam_xmat); decided
        # once, so a tracking camera never flips mid-episode.
        up = self.data.camera(camera).xmat.reshape(3, 3)[:, 1]
        return bool(up[2] < 0)

    def render(self, camera: str) -> np.ndarray:
        """uint8 [height, width, 3] of the current simulator state."""
        if camera not in self._ids:
            raise ValueError(f"camera {camera!r}: this renderer draws {self.cameras}")
        if self._mjr is None:
            raise RuntimeError("render after close()")
        mj = self._mj
        self._gl.make_current()
        self._camera.fixedcamid = self._ids[camera]
        mj.mjv_updateScene(self.model, self.data, self._option, self._pert, self._camera,
                           mj.mjtCatBit.mjCAT_ALL, self._scene)
        mj.mjr_render(self._rect, self._scene, self._mjr)
        mj.mjr_readPixels(self._pixels, None, self._rect, self._mjr)
        # GL rows run bottom-up; for an upside-down camera, a horizontal flip instead completes
        # the half turn.
        frame = self._pixels[:, ::-1] if self.upside_down[camera] else self._pixels[::-1]
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        if self._mjr is not None:
            self._gl.make_current()
            self._mjr.free()
            self._mjr = None
            self._gl.free()
            atexit.unregister(self.close)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PixelMetaWorldEnv:
    """Meta-World seen through cameras: reset/step return the named observation dict (history
    oldest first, padded after reset by repeating the first observation)."""

    def __init__(self, task: str, tasks=(), cameras=DEFAULT_CAMERAS, image_size=DEFAULT_SIZE,
                 n_obs_steps: int = 2, max_steps: int = MAX_STEPS):
        try:
            height, width = image_size
        except (TypeError, ValueError):
            raise ValueError(f"image_size: expected (height, width), got {image_size!r}") from None
        self.state_env = MetaWorldEnv(task, tasks=tasks, n_obs_steps=n_obs_steps,
                                      max_steps=max_steps)
        mw = self.state_env._mw
        try:
            self.renderer = CameraRenderer(mw.model, mw.data, cameras, height, width)
        except BaseException:
            self.state_env.close()
            raise
        self.task, self.tasks = task, self.state_env.tasks
        self.cameras = list(cameras)
        self.n_obs_steps = n_obs_steps
        self.state_dim = ROBOT_STATE_DIM + len(self.tasks)
        self.image_shape = (height, width, 3)
        self.action_low, self.action_high = self.state_env.action_low, self.state_env.action_high
        self._frames: dict[str, list] = {}

    @property
    def keys(self) -> list[str]:
        return [STATE_KEY] + [image_key(c) for c in self.cameras]

    @property
    def raw_obs(self):
        """The simulator's full 39-d state (for the scripted expert; never a policy input)."""
        return self.state_env.raw_obs

    @property
    def steps(self) -> int:
        return self.state_env.steps

    @property
    def success(self) -> bool:
        return self.state_env.success

    @property
    def done(self) -> bool:
        return self.state_env.done

    def _push_frames(self, render: bool = True) -> None:
        for c in self.cameras:
            hist = self._frames.setdefault(c, [])
            hist.append(self.renderer.render(c) if render else None)
            del hist[:-self.n_obs_steps]

    def reset(self, seed: int) -> dict:
        self.state_env.reset(seed)
        place_target_sites(self.state_env._mw)
        self._frames = {}
        self._push_frames()
        for hist in self._frames.values():
            hist[:0] = [hist[0]] * (self.n_obs_steps - 1)
        return self.observation()

    def step(self, action, render: bool = True):
        """Step the simulator and return the observation. render=False draws no frames
        (rendering is most of a step's cost, and a policy that replans every few steps reads only
        the n_obs_steps frames before each replan); the return value is None until the last
        n_obs_steps steps were all rendered."""
        self.state_env.step(action)
        self._push_frames(render)
        if not render or any(f is None for hist in self._frames.values() for f in hist):
            return None
        return self.observation()

    def observation(self) -> dict:
        hist = self.state_env.observation()  # [T, 39 + len(tasks)]: state, one-hot
        state = np.concatenate([hist[:, :ROBOT_STATE_DIM], hist[:, STATE_DIM:]], axis=1)
        obs = {STATE_KEY: np.ascontiguousarray(state, dtype=np.float32)}
        for c in self.cameras:
            if any(f is None for f in self._frames[c]):
                raise RuntimeError(f"the observation needs frames of the last {self.n_obs_steps} "
                                   "steps, and one of them was stepped with render=False; render "
                                   "the n_obs_steps steps before each observation you read")
            obs[image_key(c)] = np.stack(self._frames[c])
        return obs

    def close(self) -> None:
        self.renderer.close()
        self.state_env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
