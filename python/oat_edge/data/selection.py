"""The arrays a policy trains on, picked out of a dataset: the action feature, the state
features (concatenated in the order asked), each episode's task, and the value ranges the
normalizers start from (the dataset's declared stats when present, else computed).

Camera features are read and checked (decoded, shapes and timestamps validated) but not yet
consumed: asking for one in `obs_keys` is an error until camera policies exist.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def select_features(source, obs_keys=None, action_key=None, actions_only=False,
                    min_episode_frames: int = 2, progress=None,
                    filter_key=None) -> TrainingArrays:
    """source: a dataset path or an opened dataset. obs_keys default to every state feature
    (cameras declared by the dataset are validated, not used); action_key to the dataset's."""
    from oat_edge.data.open import open_dataset
    ds = source if hasattr(source, "column") else open_dataset(source, filter_key=filter_key)
    action_key = action_key or ds.action_key
    ds.feature(action_key)
    explicit = obs_keys is not None
    obs_keys = list(obs_keys) if explicit else ds.state_keys
    _check_keys(ds, obs_keys, action_key, actions_only)

    actions = ds.column(action_key).reshape(ds.num_frames, -1).astype(np.float32)
    parts, layout = [], []
    if not actions_only:
        for k in obs_keys:
            x = ds.column(k).reshape(ds.num_frames, -1).astype(np.float32)
            parts.append(x)
            layout.append(f"{k} [{x.shape[1]}]")
        if not explicit:
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
    ends = np.cumsum(lengths[keep]).astype(np.int64)
    skipped = int((~keep).sum())

    ranges = _stats_ranges(ds, action_key, actions.shape[1], obs_keys, parts)
    info = {"tasks": list(ds.tasks),
            "obs_layout": " + ".join(layout) + " followed by a one-hot over `tasks`",
            "obs_keys": list(obs_keys), "action_key": action_key, "fps": float(ds.fps),
            "dataset": {"path": ds.path, "format": ds.format, "episodes": ds.num_episodes,
                        "frames": ds.num_frames, "skipped_short_episodes": skipped,
                        "cameras_not_used": [k for k in ds.camera_keys if k not in obs_keys]},
            "stats_ranges": ranges}
    return TrainingArrays(state, actions, ends, ds.episode_task[keep].astype(np.int64),
                          list(ds.tasks), info)


def _check_keys(ds, obs_keys, action_key, actions_only):
    """The keys name features of `ds`, the action is not also observed, no camera is observed."""
    for k in obs_keys:
        ds.feature(k)
    cams = [k for k in obs_keys if ds.features[k].is_camera]
    if cams:
        raise DatasetError(f"{ds.path}: --obs-keys {cams}: camera observations are not "
                           f"supported by oat_edge policies yet; pass state features only, e.g. "
                           f"--obs-keys {' '.join(ds.state_keys) or 'observation.state'}")
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
