"""Meta-World scripted-expert demonstrations -> one .npz file or a LeRobot v3.0 dataset.

    python -m oat_edge.train.demos --tasks reach-v3 push-v3 pick-place-v3 \
        --episodes 50 --out runs/demos.npz --workers 2
    python -m oat_edge.train.demos ... --cameras corner topview --image-size 64 --out runs/pixels.npz
    python -m oat_edge.train.demos ... --format lerobot --out runs/demos_lerobot [--cameras corner]

With --cameras every step also records each camera's frame, rendered headless (MUJOCO_GL=egl)
exactly as `oat_edge.sim.camera.PixelMetaWorldEnv` renders it: the frame the camera saw when the
action was taken. The LeRobot dataset holds observation.state (the 39-d state), action and the
task name as the episode's task string; its fps is the simulator's control rate (1 / env.dt).
With cameras it holds one video `observation.images.<camera>` per camera, and LeRobot's split of
the state: observation.state is what the robot knows about itself (end-effector xyz + gripper
opening, as PixelMetaWorldEnv observes it), observation.environment_state the 39-d simulator
state (object and goal positions included: a state policy trains on it with
--obs-keys observation.environment_state).

File format (see docs/DATA.md):
    obs           float32 [N, 39]   observation at which the action was taken
    actions       float32 [N, 4]    expert action, clipped to [-1, 1] (what the env executes)
    episode_ends  int64   [E]       cumulative, exclusive end index of each episode in obs/actions
    episode_task  int64   [E]       index into task_names
    task_names    str     [T]
    meta          str     []        JSON: seed, metaworld version, expert success rates, ...
    observation.images.<camera>  uint8 [N, H, W, 3]  optional (--cameras): the camera's frame at
                                                     each step, channels last
A pixel policy's `observation.state` is derived from obs (end-effector xyz + gripper, obs[:, :4])
and the task, as PixelMetaWorldEnv builds it; the full 39-d state is kept for state policies.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
import warnings
import zipfile
from dataclasses import dataclass, field

import numpy as np

from oat_edge.atomic import atomic_path, check_output_file, write_json
from oat_edge.sim.camera import IMAGE_PREFIX, ROBOT_STATE_DIM, image_key

OBS_DIM = 39
ACTION_DIM = 4
FORMAT = "oat_edge.demos"
FORMAT_VERSION = 1
FORMATS = ("npz", "lerobot")


class DemoFormatError(ValueError):
    """A demos file that is missing fields, has wrong shapes or non-finite values."""


@dataclass
class Demos:
    obs: np.ndarray           # float32 [N, 39]
    actions: np.ndarray       # float32 [N, 4]
    episode_ends: np.ndarray  # int64 [E]
    episode_task: np.ndarray  # int64 [E]
    task_names: list
    meta: dict
    # {"observation.images.<camera>": uint8 [N, H, W, 3]}, empty for state-only demos
    images: dict = field(default_factory=dict)

    @property
    def cameras(self) -> list[str]:
        return [k[len(IMAGE_PREFIX):] for k in self.images]

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    def episode_slices(self):
        starts = np.concatenate([[0], self.episode_ends[:-1]])
        return [slice(int(s), int(e)) for s, e in zip(starts, self.episode_ends)]


# ----------------------------------------------------------------------------- generation

def _episode_seed(seed: int, task_index: int, attempt: int) -> int:
    # one independent seed per (run seed, task, attempt): results do not depend on `workers`
    return int(np.random.SeedSequence([seed, task_index, attempt]).generate_state(1)[0])


_ENVS = {}  # per-process cache: task -> (env, expert)
_RENDERERS = {}  # per-process cache: (task, cameras, size) -> CameraRenderer


def _get_env(task: str):
    if task not in _ENVS:
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World/ namespace)
        from metaworld.policies import ENV_POLICY_MAP

        if task not in ENV_POLICY_MAP:
            raise ValueError(f"task: expected a Meta-World task with a scripted expert "
                             f"(e.g. reach-v3), given {task!r}")
        env = gym.make("Meta-World/goal_observable", env_name=task, seed=0,
                       disable_env_checker=True)
        u = env.unwrapped
        u._freeze_rand_vec = False  # fresh random object/goal setup at every reset
        u.seeded_rand_vec = True    # ...drawn from the env's own RNG, which we seed per episode
        _ENVS[task] = (env, ENV_POLICY_MAP[task]())
    return _ENVS[task]


def run_episode(task: str, ep_seed: int, max_steps: int = 500):
    """One expert rollout, cut at the first success. Returns (success, obs, actions, steps)."""
    with warnings.catch_warnings():
        # the experts ("Constant(s) may be too high") and env construction warn constantly
        warnings.simplefilter("ignore", UserWarning)
        return _rollout(task, ep_seed, max_steps)[:4]


def _renderer(task, cameras, size):
    key = (task, tuple(cameras), size)
    if key not in _RENDERERS:
        from oat_edge.sim.camera import CameraRenderer
        u = _get_env(task)[0].unwrapped
        _RENDERERS[key] = CameraRenderer(u.model, u.data, list(cameras), size, size)
    return _RENDERERS[key]


def _rollout(task, ep_seed, max_steps, cameras=(), image_size=64):
    """-> (success, obs, actions, steps, {camera: uint8 [T, H, W, 3]} or None)."""
    if cameras:
        import oat_edge.sim.camera  # noqa: F401  (picks headless EGL before mujoco loads)
    env, expert = _get_env(task)
    cam = _renderer(task, cameras, image_size) if cameras else None  # before reset: it runs mj_forward
    env.unwrapped.seed(ep_seed)
    obs, _ = env.reset()
    if cam is not None:
        from oat_edge.sim.camera import place_target_sites
        place_target_sites(env.unwrapped)  # the first frame shows this episode's goal
    obs_buf, act_buf, frames = [], [], {c: [] for c in cameras}
    for _ in range(max_steps):
        a = np.clip(expert.get_action(obs), -1.0, 1.0)
        obs_buf.append(obs.astype(np.float32))
        act_buf.append(a.astype(np.float32))
        for c in cameras:
            frames[c].append(cam.render(c))  # what the camera saw when the action was taken
        obs, _, terminated, truncated, info = env.step(a)
        if info.get("success", 0.0) > 0.5:
            return (True, np.stack(obs_buf), np.stack(act_buf), len(act_buf),
                    {c: np.stack(f) for c, f in frames.items()} if cameras else None)
        if terminated or truncated:
            break
    return False, None, None, len(act_buf), None


def _worker(job):
    task_index, task, attempt, ep_seed, max_steps, cameras, image_size = job
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ok, obs, act, steps, frames = _rollout(task, ep_seed, max_steps, cameras, image_size)
    return task_index, attempt, ok, obs, act, steps, frames


def _check_cameras(cameras, image_size):
    from oat_edge.train.observation import CAMERA_NAME
    cameras = list(cameras or ())
    bad = [c for c in cameras if not isinstance(c, str) or not CAMERA_NAME.match(c)]
    if bad:
        raise ValueError(f"cameras: expected Meta-World camera names (e.g. corner topview), "
                         f"given {bad}")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras: expected distinct names, given {cameras}")
    if cameras and (isinstance(image_size, bool) or not isinstance(image_size, int)
                    or not 8 <= image_size <= 480):
        raise ValueError(f"image_size: expected an int in 8..480 pixels, given {image_size!r}")
    return tuple(cameras)


def _check_demo_args(tasks, episodes_per_task, out_path, fmt, overwrite):
    """Every argument error before any simulator starts; returns the task list."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, given {fmt!r}")
    if fmt == "lerobot" and os.path.exists(out_path) and os.listdir(out_path) and not overwrite:
        raise ValueError(f"{out_path}: already exists and is not empty; choose another --out "
                         f"or pass --overwrite")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks: expected at least one Meta-World task name, given []")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks: expected distinct names, given {tasks}")
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task: expected >= 1, given {episodes_per_task}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from metaworld.policies import ENV_POLICY_MAP
    for t in tasks:
        if t not in ENV_POLICY_MAP:
            raise ValueError(f"tasks: expected Meta-World task names with a scripted expert "
                             f"(e.g. reach-v3), given {t!r}")
    return tasks


def _roll_out(tasks, episodes_per_task, max_attempts, seed, workers, max_steps, cameras, image_size,
              progress):
    """Run expert episodes (in `workers` spawned processes) until each task has its successes or
    its attempts are spent. Returns {(task_index, attempt): (ok, obs, act, steps, frames)} and the
    per-task success and attempt counts."""
    from tqdm import tqdm

    done = {}
    successes = [0] * len(tasks)
    attempts = [0] * len(tasks)
    # spawn: never fork a parent that may hold torch/OpenMP threads
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 else None
    bar = tqdm(total=episodes_per_task * len(tasks), desc="demos", unit="ep",
               disable=None if progress else True,  # None: off when stderr is not a terminal
               dynamic_ncols=True)
    try:
        while True:
            # each round asks every short task for exactly the episodes it still misses
            jobs = []
            for ti, task in enumerate(tasks):
                need = min(episodes_per_task - successes[ti], max_attempts - attempts[ti])
                for _ in range(max(need, 0)):
                    a = attempts[ti]
                    attempts[ti] += 1
                    jobs.append((ti, task, a, _episode_seed(seed, ti, a), max_steps, cameras,
                                 image_size))
            if not jobs:
                break
            results = (pool.imap_unordered(_worker, jobs) if pool else map(_worker, jobs))
            for ti, a, ok, obs, act, steps, frames in results:
                done[(ti, a)] = (ok, obs, act, steps, frames)
                if ok:
                    successes[ti] += 1
                    bar.update(1)
                bar.set_postfix(fail=sum(not v[0] for v in done.values()))
    except BaseException:
        if pool:  # Ctrl-C or an error: stop the workers now, not after the queued episodes
            pool.terminate()
            pool.join()
            pool = None
        raise
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    return done, successes, attempts


def _check_camera_names(task, cameras, image_size):
    """Unknown camera names fail here, before any episode is rolled out."""
    u = _get_env(task)[0].unwrapped
    names = [u.model.camera(i).name for i in range(u.model.ncam)]
    unknown = [c for c in cameras if c not in names]
    if unknown:
        raise ValueError(f"cameras: {unknown} are not Meta-World cameras; expected some of {names}")


def _expert_summary(tasks, done, successes, attempts):
    per_task = {}
    for ti, task in enumerate(tasks):
        lengths = [len(done[k][2]) for k in done if k[0] == ti and done[k][0]]
        per_task[task] = {
            "attempts": attempts[ti],
            "successes": successes[ti],
            "success_rate": successes[ti] / max(attempts[ti], 1),
            "mean_length": float(np.mean(lengths or [0])),
        }
    return per_task


def _metaworld_version():
    try:
        from importlib.metadata import version
        return version("metaworld")
    except Exception:  # pragma: no cover
        return "unknown"


def _assemble(tasks, done, meta, cameras=()):
    """The successful episodes in a deterministic order (task, then attempt) as Demos, with the
    cameras' frames."""
    obs_l, act_l, ends, ep_task, frames_l = [], [], [], [], {c: [] for c in cameras}
    n = 0
    for key in sorted(done):
        ok, obs, act, _, frames = done[key]
        if not ok:
            continue
        for c in cameras:
            frames_l[c].append(frames[c])
        obs_l.append(obs)
        act_l.append(act)
        n += len(act)
        ends.append(n)
        ep_task.append(key[0])
    if not obs_l:
        raise RuntimeError(f"no successful expert episode for tasks {tasks}")
    images = {image_key(c): np.concatenate(f) for c, f in frames_l.items()}
    return Demos(obs=np.concatenate(obs_l), actions=np.concatenate(act_l),
                 episode_ends=np.asarray(ends, np.int64),
                 episode_task=np.asarray(ep_task, np.int64), task_names=tasks, meta=meta,
                 images=images)


def generate_demos(tasks, episodes_per_task, out_path, seed=0, workers=2, max_steps=500,
                   max_attempts_factor=2.0, progress=True, fmt="npz", cameras=(),
                   image_size=64, overwrite=False):
    """Roll out scripted experts until `episodes_per_task` successes per task (at most
    `max_attempts_factor * episodes_per_task + 5` attempts); failures are dropped and counted.
    Writes `out_path` (.npz, or a LeRobot v3.0 directory with fmt="lerobot"), with every step's
    frame of each of `cameras` (image_size x image_size), and returns a summary dict."""
    cameras = _check_cameras(cameras, image_size)
    tasks = _check_demo_args(tasks, episodes_per_task, out_path, fmt, overwrite)
    if cameras:
        import oat_edge.sim.camera  # noqa: F401  (picks headless EGL before mujoco loads)
        _check_camera_names(tasks[0], cameras, image_size)
    max_attempts = int(max_attempts_factor * episodes_per_task) + 5
    t0 = time.time()
    done, successes, attempts = _roll_out(tasks, episodes_per_task, max_attempts, seed, workers,
                                          max_steps, cameras, image_size, progress)
    elapsed = time.time() - t0
    total_steps = sum(v[3] for v in done.values())
    per_task = _expert_summary(tasks, done, successes, attempts)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "seed": seed, "metaworld_version": _metaworld_version(), "env_id": "Meta-World/goal_observable",
        "episodes_per_task": episodes_per_task, "max_steps": max_steps,
        "cut_at_success": True, "actions_clipped": [-1.0, 1.0],
        "expert": per_task, "workers": workers,
        "sim_steps": int(total_steps), "seconds": round(elapsed, 2),
    }
    if cameras:
        meta.update(cameras=list(cameras), image_size=[image_size, image_size])
    demos = _assemble(tasks, done, meta, cameras)
    if fmt == "lerobot":
        save_lerobot(demos, out_path, overwrite=overwrite)
    else:
        save_demos(demos, out_path)
    return {"out": str(out_path), "episodes": demos.num_episodes, "steps": int(len(demos.actions)),
            "sim_steps": int(total_steps), "seconds": round(elapsed, 2),
            "sim_steps_per_s": round(total_steps / max(elapsed, 1e-9), 1), "expert": per_task}


# ----------------------------------------------------------------------------- file I/O

def save_demos(demos: Demos, path) -> None:
    _validate(demos.obs, demos.actions, demos.episode_ends, demos.episode_task,
              demos.task_names, str(path))
    _validate_images(demos.images, len(demos.obs), str(path))
    path = str(path) if str(path).endswith(".npz") else f"{path}.npz"  # as np.savez names it
    arrays = dict(obs=demos.obs.astype(np.float32), actions=demos.actions.astype(np.float32),
                  episode_ends=demos.episode_ends.astype(np.int64),
                  episode_task=demos.episode_task.astype(np.int64),
                  task_names=np.asarray(list(demos.task_names), dtype=np.str_),
                  meta=np.asarray(json.dumps(demos.meta)), **demos.images)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _savez(f, arrays)


def _savez(f, arrays) -> None:
    """np.savez_compressed, except camera frames are LZMA-compressed: 64x64 Meta-World frames
    come out 1.8x smaller than with zlib (measured, 2 cameras), and np.load reads both."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name, x in arrays.items():
            kind = zipfile.ZIP_LZMA if name.startswith(IMAGE_PREFIX) else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = kind
            with zf.open(info, "w", force_zip64=True) as m:
                np.lib.format.write_array(m, np.asanyarray(x), allow_pickle=False)


def control_hz(task: str) -> float:
    """The simulator's control rate: one env.step is frame_skip physics steps (Meta-World: 80 Hz)."""
    return float(1.0 / _get_env(task)[0].unwrapped.dt)


def save_lerobot(demos: Demos, out_dir, overwrite=False) -> None:
    """Demos (with their cameras' frames, one video each) -> LeRobot v3.0 dataset at `out_dir`
    (atomic)."""
    from oat_edge.data.lerobot_writer import write_lerobot

    _validate(demos.obs, demos.actions, demos.episode_ends, demos.episode_task,
              demos.task_names, str(out_dir))
    _validate_images(demos.images, len(demos.obs), str(out_dir))
    episodes = []
    for e, sl in enumerate(demos.episode_slices()):
        ep = {"observation.state": demos.obs[sl], "action": demos.actions[sl],
              "task": demos.task_names[int(demos.episode_task[e])]}
        if demos.images:  # the robot's own state apart from the simulator's (LeRobot's names)
            ep["observation.state"] = demos.obs[sl, :ROBOT_STATE_DIM]
            ep["observation.environment_state"] = demos.obs[sl]
        ep.update({k: v[sl] for k, v in demos.images.items()})
        episodes.append(ep)
    names = {"action": ["dx", "dy", "dz", "gripper"]}
    if demos.images:
        names["observation.state"] = ["x", "y", "z", "gripper"]
    write_lerobot(out_dir, control_hz(demos.task_names[0]), episodes, robot_type="sawyer",
                  overwrite=overwrite, feature_names=names)
    # how the demos were made, beside LeRobot's own metadata (readers ignore unknown files)
    meta_path = os.path.join(str(out_dir), "meta", "oat_edge_demos.json")
    write_json(meta_path, demos.meta, indent=1)


def _validate(obs, actions, ends, ep_task, task_names, where):
    def bad(field, expected, given):
        raise DemoFormatError(f"{where}: {field}: expected {expected}, given {given}")

    if obs.ndim != 2 or obs.shape[1] != OBS_DIM:
        bad("obs", f"shape [N, {OBS_DIM}]", list(obs.shape))
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        bad("actions", f"shape [N, {ACTION_DIM}]", list(actions.shape))
    if len(obs) == 0:
        bad("obs", "at least one step (non-empty dataset)", "0 steps")
    if len(actions) != len(obs):
        bad("actions", f"{len(obs)} rows (same as obs)", len(actions))
    for name, x in (("obs", obs), ("actions", actions)):
        if not np.all(np.isfinite(x)):
            i = int(np.argwhere(~np.isfinite(x))[0, 0])
            bad(name, "finite values", f"NaN/inf at row {i}")
    if ends.ndim != 1 or len(ends) == 0:
        bad("episode_ends", "a non-empty 1-D array", list(ends.shape))
    if np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        bad("episode_ends", "strictly increasing positive values", ends[:10].tolist())
    if ends[-1] != len(obs):
        bad("episode_ends", f"last value == N == {len(obs)}", int(ends[-1]))
    if ep_task.shape != ends.shape:
        bad("episode_task", f"shape {list(ends.shape)}", list(ep_task.shape))
    if len(task_names) == 0:
        bad("task_names", "at least one task", "[]")
    if np.any(ep_task < 0) or np.any(ep_task >= len(task_names)):
        bad("episode_task", f"indices in [0, {len(task_names)})",
            f"[{ep_task.min()}, {ep_task.max()}]")


def _validate_images(images, n, where):
    for k, x in images.items():
        if not k.startswith(IMAGE_PREFIX):
            raise DemoFormatError(f"{where}: {k}: expected camera fields named "
                                  f"{IMAGE_PREFIX}<camera>")
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) != n:
            raise DemoFormatError(f"{where}: {k}: expected uint8 [{n}, H, W, 3] (one frame per "
                                  f"step, channels last), given {x.dtype} {list(x.shape)}")


def load_demos(path, images: bool = True) -> Demos:
    """Load and validate a demos .npz (raises DemoFormatError naming field/expected/given).
    images=False skips the camera frames (the tokenizer reads actions only)."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"demos file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("obs", "actions", "episode_ends", "episode_task", "task_names")
                   if k not in z.files]
        if missing:
            raise DemoFormatError(f"{path}: missing fields {missing}; expected obs, actions, "
                                  f"episode_ends, episode_task, task_names, meta")
        obs, actions = z["obs"], z["actions"]
        ends, ep_task = z["episode_ends"].astype(np.int64), z["episode_task"].astype(np.int64)
        task_names = [str(t) for t in z["task_names"].tolist()]
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        frames = {k: z[k] for k in z.files if k.startswith(IMAGE_PREFIX)} if images else {}
    _validate(obs, actions, ends, ep_task, task_names, path)
    _validate_images(frames, len(obs), path)
    return Demos(obs.astype(np.float32), actions.astype(np.float32), ends, ep_task,
                 task_names, meta, frames)


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["reach-v3", "push-v3", "pick-place-v3"])
    p.add_argument("--episodes", type=int, default=50, help="successful episodes per task")
    p.add_argument("--out", default="runs/demos.npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--format", default="npz", choices=FORMATS,
                   help="npz file, or a LeRobot v3.0 dataset directory")
    p.add_argument("--cameras", "--camera", nargs="+", default=[],
                   help="also record these cameras' frames at every step (e.g. corner topview): "
                        "uint8 arrays in the .npz, videos in a LeRobot dataset")
    p.add_argument("--image-size", type=int, default=64, help="camera frame height = width")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is off anyway when stderr is not a terminal)")
    args = p.parse_args(argv)
    if args.format == "npz":  # a directory there would fail only after all the episodes
        check_output_file(args.out, "--out")
    s = generate_demos(args.tasks, args.episodes, args.out, seed=args.seed,
                       workers=args.workers, max_steps=args.max_steps, fmt=args.format,
                       cameras=args.cameras, image_size=args.image_size,
                       overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {s['out']}: {s['episodes']} episodes, {s['steps']} steps "
          f"({s['sim_steps']} sim steps in {s['seconds']} s, {s['sim_steps_per_s']} steps/s"
          + (f", cameras {' '.join(args.cameras)} at {args.image_size}x{args.image_size}"
             if args.cameras else "") + ")")
    for task, r in s["expert"].items():
        print(f"  {task:24s} expert success {r['successes']}/{r['attempts']} "
              f"({100 * r['success_rate']:.0f}%), mean length {r['mean_length']:.1f}")


if __name__ == "__main__":
    main()
