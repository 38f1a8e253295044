"""The arrays a policy trains on, picked out of a dataset: the action feature, the state
features (concatenated in the order asked), the camera frames asked for, each episode's task, and
the value ranges the normalizers start from (the dataset's declared stats when present, else
computed).

Cameras are asked for by `cameras` (never in `obs_keys`, which are state features), by the
dataset's key (`observation.images.wrist`, `obs/agentview_image`) or by the camera name a policy
input is called by (`wrist`, `agentview`); a state policy's cameras are still decoded and checked,
so a bad video fails before training.

A camera policy's state defaults to what the robot knows about itself (`proprioception_keys`):
LeRobot's `observation.state` (not `observation.environment_state`, a simulator's privileged
object and goal positions), robomimic's `obs/robot*` features; other datasets, every state feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from oat_edge.data.errors import DatasetError
from oat_edge.data.stats import declared_range


@dataclass
class TrainingArrays:
    state: np.ndarray          # float32 [N, S] (S may be 0 when actions_only)
    actions: np.ndarray        # float32 [N, A]
    episode_ends: np.ndarray   # int64 [E]
    episode_task: np.ndarray   # int64 [E]
    tasks: list
    info: dict                 # what the trainers record (tasks, obs_layout, fps, ranges, ...)
    # {"observation.images.<camera>": uint8 [N, H, W, 3]} for the cameras asked for
    frames: dict = field(default_factory=dict)


def proprioception_keys(ds) -> list:
    """The state features a camera policy reads by default (see the module doc)."""
    keys = ds.state_keys
    if "observation.state" in keys:
        return ["observation.state"]
    robot = [k for k in keys if k.startswith("obs/robot")]
    return robot or keys


def camera_name(key: str) -> str:
    """The camera a dataset's image feature is named after: observation.images.wrist -> wrist,
    obs/agentview_image -> agentview (a policy's input is observation.images.<camera>)."""
    name = key.split("/")[-1].split(".")[-1] if key.startswith(("obs/", "observation")) else key
    name = re.sub(r"_(image|rgb)$", "", name)
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "camera"


def camera_keys(ds, cameras) -> list:
    """cameras ("all", or names / dataset keys) -> the dataset's camera feature keys, in the order
    asked; an unknown, non-camera or ambiguous name is a DatasetError listing what there is."""
    have = ds.camera_keys
    if cameras == "all" or cameras == ["all"]:
        if not have:
            raise DatasetError(f"{ds.path}: expected camera features for a camera policy, the "
                               f"dataset has none (features {sorted(ds.features)})")
        return list(have)
    keys = []
    for c in cameras:
        if c in ds.features and not ds.features[c].is_camera:
            f = ds.features[c]
            raise DatasetError(f"{ds.path}: {c!r}: expected a camera (uint8 frames [H, W, 3] or a "
                               f"video), given dtype {f.dtype} shape {list(f.shape)}; its cameras: "
                               f"{have or 'none'}")
        match = [k for k in have if k == c or camera_name(k) == c]
        if len(match) != 1:
            raise DatasetError(f"{ds.path}: camera {c!r}: " + ("matches several features "
                               f"{match}; name one by its key" if match else
                               f"not in the dataset; its cameras: "
                               f"{[f'{k} ({camera_name(k)})' for k in have] or 'none'}"))
        keys.append(match[0])
    names = [camera_name(k) for k in keys]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{ds.path}: cameras {keys}: expected distinct camera names, "
                           f"{dup} named more than once")
    return keys


def select_features(source, obs_keys=None, action_key=None, actions_only=False,
                    min_episode_frames: int = 2, progress=None,
                    filter_key=None, cameras=None) -> TrainingArrays:
    """source: a dataset path or an opened dataset. obs_keys default to every state feature;
    action_key to the dataset's; cameras (names, keys or "all") are the frames returned (None:
    none; the dataset's cameras are then validated, not used)."""
    from oat_edge.data.open import open_dataset
    ds = source if hasattr(source, "column") else open_dataset(source, filter_key=filter_key)
    action_key = action_key or ds.action_key
    ds.feature(action_key)
    explicit = obs_keys is not None
    default = ds.state_keys if cameras is None else proprioception_keys(ds)
    obs_keys = list(obs_keys) if explicit else default
    _check_keys(ds, obs_keys, action_key, actions_only)
    cam_keys = camera_keys(ds, cameras) if cameras is not None else []

    actions = ds.column(action_key).reshape(ds.num_frames, -1).astype(np.float32)
    parts, layout = [], []
    if not actions_only:
        for k in obs_keys:
            x = ds.column(k).reshape(ds.num_frames, -1).astype(np.float32)
            parts.append(x)
            layout.append(f"{k} [{x.shape[1]}]")
        if not explicit or cam_keys:
            for k in ds.camera_keys:  # validated now, so a bad video fails before training
                ds.frames(k, progress=progress)
    state = (np.concatenate(parts, axis=1) if parts
             else np.zeros((ds.num_frames, 0), np.float32))

    # drop degenerate episodes, counted
    lengths = ds.episode_lengths
    keep = lengths >= min_episode_frames
    if not keep.any():
        raise DatasetError(f"{ds.path}: every episode has fewer than {min_episode_frames} "
                           f"frames (longest {int(lengths.max())}); nothing to train on")
    rows = np.concatenate([np.arange(s, e) for s, e, k in
                           zip(ds.episode_starts, ds.episode_ends, keep) if k])
    state, actions = state[rows], actions[rows]
    frames = {f"observation.images.{camera_name(k)}": _frames(ds, k, progress)[rows]
              for k in cam_keys}
    ends = np.cumsum(lengths[keep]).astype(np.int64)
    skipped = int((~keep).sum())

    ranges = _stats_ranges(ds, action_key, actions.shape[1], obs_keys, parts)
    info = {"tasks": list(ds.tasks),
            "obs_layout": " + ".join(layout) + " followed by a one-hot over `tasks`",
            "obs_keys": list(obs_keys), "action_key": action_key, "fps": float(ds.fps),
            "camera_keys": {f"observation.images.{camera_name(k)}": k for k in cam_keys},
            "dataset": {"path": ds.path, "format": ds.format, "episodes": ds.num_episodes,
                        "frames": ds.num_frames, "skipped_short_episodes": skipped,
                        "cameras_not_used": [k for k in ds.camera_keys if k not in cam_keys]},
            "stats_ranges": ranges}
    return TrainingArrays(state, actions, ends, ds.episode_task[keep].astype(np.int64),
                          list(ds.tasks), info, frames)


def _frames(ds, key, progress):
    x = ds.frames(key, progress=progress)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DatasetError(f"{ds.path}: {key}: expected uint8 frames [N, H, W, 3] (channels "
                           f"last), given {x.dtype} {list(x.shape)}")
    return x


def _check_keys(ds, obs_keys, action_key, actions_only):
    """The keys name features of `ds`, the action is not also observed, no camera is observed."""
    for k in obs_keys:
        ds.feature(k)
    cams = [k for k in obs_keys if ds.features[k].is_camera]
    if cams:
        raise DatasetError(f"{ds.path}: --obs-keys {cams}: these are cameras; --obs-keys names "
                           f"state features only (e.g. --obs-keys "
                           f"{' '.join(ds.state_keys) or 'observation.state'}), cameras go in "
                           f"--cameras {' '.join(camera_name(k) for k in cams)}")
    if action_key in obs_keys:
        raise DatasetError(f"{ds.path}: {action_key!r} is the action; it cannot also be an "
                           f"observation key")
    if not obs_keys and not actions_only:
        raise DatasetError(f"{ds.path}: no state feature to observe; the dataset declares "
                           f"{sorted(ds.features)} - pass --obs-keys")


def _stats_ranges(ds, action_key, action_dim, obs_keys, parts):
    """The action and observation ranges the dataset's own statistics declare (the observation's
    only when every key has one; the task one-hot's range is [0, 1])."""
    ranges = {}
    act = declared_range(ds.stats, action_key, action_dim)
    if act is not None:
        ranges["action"] = [act[0].tolist(), act[1].tolist()]
    obs_rng = [declared_range(ds.stats, k, p.shape[1]) for k, p in zip(obs_keys, parts)]
    if parts and all(r is not None for r in obs_rng):
        nt = len(ds.tasks)
        ranges["obs"] = [np.concatenate([r[0] for r in obs_rng] + [np.zeros(nt)]).tolist(),
                         np.concatenate([r[1] for r in obs_rng] + [np.ones(nt)]).tolist()]
    return ranges
