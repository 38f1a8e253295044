"""Demos or a dataset -> (observation history, action chunk) training pairs as plain tensors.

One sample per step t of every episode:
    obs     [n_obs_steps, obs_dim]  observations t-n_obs_steps+1 .. t; before the episode start
                                    the first observation is repeated
    actions [H_a, D_a]              actions t .. t+H_a-1; past the episode end the last action
                                    is repeated (the robot holds its final command)
obs_dim = state dims + len(task_names) (one-hot task id), the layout the bundle manifest calls
"obs_layout": the 39-d Meta-World state for .npz demos, the dataset's state features (in the
order given) for a LeRobot / robomimic dataset (oat_edge.data). Held-out split is by whole
episodes, stratified by task, seeded. Everything is small (~10k samples): tensors in memory,
random index batches, no DataLoader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from oat_edge.data.windows import window_indices
from oat_edge.train.demos import Demos, load_demos

OBS_LAYOUT = "39-d Meta-World state followed by a one-hot over `tasks`"


@dataclass
class DataConfig:
    horizon: int = 32          # H_a
    n_obs_steps: int = 2
    val_fraction: float = 0.1  # fraction of episodes (per task) held out
    seed: int = 0              # split seed
    # Dataset episodes with fewer frames are skipped (and counted). Episodes shorter than the
    # action chunk are kept: their chunks hold the last action, as a robot holds its last command.
    min_episode_frames: int = 2


def make_observation(state, task_index, num_tasks):
    """state [..., 39] + task index -> [..., 39 + num_tasks] (state, one-hot). numpy in/out."""
    state = np.asarray(state, dtype=np.float32)
    task_index = np.asarray(task_index, dtype=np.int64)
    if np.any(task_index < 0) or np.any(task_index >= num_tasks):
        raise ValueError(f"task_index: expected in [0, {num_tasks}), given {task_index}")
    onehot = np.eye(num_tasks, dtype=np.float32)[task_index]
    onehot = np.broadcast_to(onehot, state.shape[:-1] + (num_tasks,))
    return np.concatenate([state, onehot], axis=-1)


@dataclass
class Chunks:
    obs: torch.Tensor      # float32 [M, n_obs_steps, obs_dim] raw units
    actions: torch.Tensor  # float32 [M, H_a, D_a] raw units
    episode: torch.Tensor  # int64 [M] episode index in the demos file
    task: torch.Tensor     # int64 [M]

    def __len__(self):
        return self.obs.shape[0]

    def subset(self, idx):
        return Chunks(self.obs[idx], self.actions[idx], self.episode[idx], self.task[idx])

    def shard(self, rank: int, world: int) -> "Chunks":
        """Every world-th sample (DDP): ranks see disjoint, nearly equal parts."""
        return self.subset(torch.arange(rank, len(self), world))

    def sample_index(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, len(self), (batch_size,), generator=generator)


def build_chunks(demos: Demos, horizon: int = 32, n_obs_steps: int = 2) -> Chunks:
    return _chunks(demos.obs, demos.actions, demos.episode_ends, demos.episode_task,
                   len(demos.task_names), horizon, n_obs_steps)


def _chunks(state, actions, episode_ends, episode_task, num_tasks, horizon, n_obs_steps):
    ep, o_idx, a_idx = window_indices(episode_ends, horizon, n_obs_steps)
    task = np.asarray(episode_task)[ep]
    obs = make_observation(state[o_idx], task[:, None], num_tasks)
    return Chunks(obs=torch.from_numpy(np.ascontiguousarray(obs)),
                  actions=torch.from_numpy(np.ascontiguousarray(actions[a_idx])),
                  episode=torch.from_numpy(ep.astype(np.int64)),
                  task=torch.from_numpy(task.astype(np.int64)))


def split_episodes(episode_task, val_fraction: float, seed: int):
    """Stratified by task: round(val_fraction * n) held-out episodes per task (>= 1 when the
    task has >= 2 episodes and val_fraction > 0). Returns (train_eps, val_eps) sorted arrays."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected in [0, 1), given {val_fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for task in np.unique(episode_task):
        eps = np.flatnonzero(episode_task == task)
        n_val = int(round(val_fraction * len(eps)))
        if val_fraction > 0 and len(eps) >= 2:
            n_val = min(max(n_val, 1), len(eps) - 1)
        val.extend(rng.permutation(eps)[:n_val].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(episode_task)), val)
    return train, val


def load_dataset(source, cfg: DataConfig = DataConfig(), obs_keys=None, action_key=None,
                 actions_only: bool = False, filter_key=None):
    """source: a demos .npz path, a Demos, a dataset path (LeRobot directory, robomimic .hdf5) or
    an opened oat_edge.data dataset -> (train Chunks, val Chunks, info dict)."""
    if isinstance(source, Demos) or (isinstance(source, (str, os.PathLike))
                                     and str(source).endswith(".npz")):
        demos = source if isinstance(source, Demos) else load_demos(source, images=False)
        if obs_keys or action_key or filter_key:
            raise ValueError("obs_keys/action_key/filter_key: expected only with a dataset "
                             "(LeRobot directory or robomimic .hdf5), given a .npz demos file")
        chunks = build_chunks(demos, cfg.horizon, cfg.n_obs_steps)
        info = {"tasks": list(demos.task_names), "obs_layout": OBS_LAYOUT}
        return _split(chunks, demos.episode_task, cfg, info, demos.num_episodes)
    from oat_edge.data.selection import select_features
    arr = select_features(source, obs_keys, action_key, actions_only,
                          min_episode_frames=cfg.min_episode_frames, filter_key=filter_key)
    chunks = _chunks(arr.state, arr.actions, arr.episode_ends, arr.episode_task,
                     len(arr.tasks), cfg.horizon, cfg.n_obs_steps)
    return _split(chunks, arr.episode_task, cfg, arr.info, len(arr.episode_ends))


def _split(chunks, episode_task, cfg, info, num_episodes):
    train_eps, val_eps = split_episodes(episode_task, cfg.val_fraction, cfg.seed)
    in_val = torch.from_numpy(np.isin(chunks.episode.numpy(), val_eps))
    train, val = chunks.subset(~in_val), chunks.subset(in_val)
    if len(train) == 0:
        raise ValueError(f"dataset: expected training samples, given 0 "
                         f"({num_episodes} episodes, val_fraction {cfg.val_fraction})")
    info = dict(info, obs_dim=int(chunks.obs.shape[-1]), action_dim=int(chunks.actions.shape[-1]),
                horizon=cfg.horizon, n_obs_steps=cfg.n_obs_steps,
                train_episodes=train_eps.tolist(), val_episodes=val_eps.tolist(),
                train_samples=len(train), val_samples=len(val))
    return train, val, info


# ----------------------------------------------------------------------------- camera datasets

ROBOT_STATE_LAYOUT = ("end-effector xyz + gripper opening (Meta-World state[0:4]) followed by a "
                      "one-hot over `tasks`")


@dataclass
class PixelData:
    """A camera dataset as per-row arrays; samples index rows, so no frame is ever copied per
    sample (training keeps these arrays on its device and gathers each batch there)."""
    state: np.ndarray    # float32 [N, S]: the state features, then the task one-hot
    frames: dict         # {"observation.images.<camera>": uint8 [N, H, W, 3]}
    actions: np.ndarray  # float32 [N, A]
    episode_ends: np.ndarray
    episode_task: np.ndarray
    # float32 [N, X] or None: features a camera policy learns to predict from its frames while it
    # trains (auxiliary supervision); never an input, never exported
    aux: np.ndarray | None = None


# The 39-d simulator state of Meta-World demos under the name LeRobot gives a simulator's state
# (what `oat-edge demos --format lerobot` writes it as).
ENVIRONMENT_STATE_KEY = "observation.environment_state"


@dataclass
class PixelSamples:
    obs_rows: torch.Tensor  # int64 [M, n_obs_steps]: rows of the observation history
    actions: torch.Tensor   # float32 [M, H_a, A] raw units
    episode: torch.Tensor   # int64 [M]

    def __len__(self):
        return self.obs_rows.shape[0]


def _npz_pixel_data(demos: Demos, cameras, aux_keys=None):
    from oat_edge.sim.camera import ROBOT_STATE_DIM, image_key
    have = demos.cameras
    if not have:
        raise ValueError(f"{demos.meta.get('path', 'demos')}: expected camera frames "
                         f"(oat-edge demos --cameras ...), the file holds states and actions only")
    cameras = have if cameras is None else list(cameras)
    missing = [c for c in cameras if c not in have]
    if missing:
        raise ValueError(f"cameras: {missing} not in the demos; they hold {have}")
    ep_of_row = np.repeat(np.arange(demos.num_episodes),
                          np.diff(np.concatenate([[0], demos.episode_ends])))
    state = make_observation(demos.obs[:, :ROBOT_STATE_DIM], demos.episode_task[ep_of_row],
                             len(demos.task_names))
    aux = None
    if aux_keys:
        if list(aux_keys) != [ENVIRONMENT_STATE_KEY]:
            raise ValueError(f"aux_keys: a demos .npz offers only {ENVIRONMENT_STATE_KEY!r} (the "
                             f"simulator's {demos.obs.shape[1]}-d state), given {list(aux_keys)}")
        aux = np.ascontiguousarray(demos.obs, dtype=np.float32)
    data = PixelData(state, {image_key(c): demos.images[image_key(c)] for c in cameras},
                     demos.actions, demos.episode_ends, demos.episode_task, aux)
    return data, {"tasks": list(demos.task_names), "obs_layout": ROBOT_STATE_LAYOUT}


def _dataset_aux(source, arr, aux_keys, action_key, cfg, filter_key):
    """The dataset's aux_keys features, row for row with `arr` (the same episodes kept)."""
    from oat_edge.data.selection import select_features
    inputs = set(arr.info["obs_keys"]) | set(arr.info["camera_keys"].values())
    clash = [k for k in aux_keys if k in inputs]
    if clash:
        raise ValueError(f"aux_keys: {clash} already an input of the policy; expected features "
                         f"the policy does not see (e.g. {ENVIRONMENT_STATE_KEY} or robomimic's "
                         f"object)")
    aux = select_features(source, list(aux_keys), action_key, filter_key=filter_key,
                          min_episode_frames=cfg.min_episode_frames, cameras=None)
    if not np.array_equal(aux.episode_ends, arr.episode_ends):
        raise ValueError(f"aux_keys {list(aux_keys)}: expected the same episodes as the inputs, "
                         f"given {len(aux.episode_ends)} against {len(arr.episode_ends)}")
    return aux.state


def load_pixel_dataset(source, cfg: DataConfig = DataConfig(), cameras=None, obs_keys=None,
                       action_key=None, filter_key=None, aux_keys=None):
    """A camera dataset -> (PixelData, train PixelSamples, val PixelSamples, info).

    source: demos .npz written with --cameras (state: Meta-World's end-effector xyz and gripper,
    as PixelMetaWorldEnv observes it), a LeRobot directory or a robomimic .hdf5 (state: obs_keys,
    default every state feature). cameras: names (`corner`, or the dataset's key) or None for every
    camera. Each state row ends with the task one-hot, as in a state policy. aux_keys: features
    kept as `PixelData.aux` (a .npz offers its simulator state as observation.environment_state)."""
    if isinstance(source, Demos) or (isinstance(source, (str, os.PathLike))
                                     and str(source).endswith(".npz")):
        if obs_keys or action_key or filter_key:
            raise ValueError("obs_keys/action_key/filter_key: expected only with a dataset "
                             "(LeRobot directory or robomimic .hdf5), given a .npz demos file")
        demos = source if isinstance(source, Demos) else load_demos(source)
        data, info = _npz_pixel_data(demos, cameras, aux_keys)
    else:
        from oat_edge.data.selection import select_features
        arr = select_features(source, obs_keys, action_key, min_episode_frames=cfg.min_episode_frames,
                              filter_key=filter_key, cameras=cameras if cameras is not None else "all")
        ep_of_row = np.repeat(np.arange(len(arr.episode_ends)),
                              np.diff(np.concatenate([[0], arr.episode_ends])))
        state = make_observation(arr.state, arr.episode_task[ep_of_row], len(arr.tasks))
        aux = (_dataset_aux(source, arr, aux_keys, action_key, cfg, filter_key)
               if aux_keys else None)
        data = PixelData(state, arr.frames, arr.actions, arr.episode_ends, arr.episode_task, aux)
        info = dict(arr.info)
    ep, o_rows, a_rows = window_indices(data.episode_ends, cfg.horizon, cfg.n_obs_steps)
    train_eps, val_eps = split_episodes(data.episode_task, cfg.val_fraction, cfg.seed)
    in_val = np.isin(ep, val_eps)

    def samples(mask):
        return PixelSamples(torch.from_numpy(o_rows[mask].astype(np.int64)),
                            torch.from_numpy(np.ascontiguousarray(data.actions[a_rows[mask]])),
                            torch.from_numpy(ep[mask].astype(np.int64)))

    train, val = samples(~in_val), samples(in_val)
    if len(train) == 0:
        raise ValueError(f"dataset: expected training samples, given 0 "
                         f"({len(data.episode_ends)} episodes, val_fraction {cfg.val_fraction})")
    info = dict(info, cameras=list(data.frames), state_dim=int(data.state.shape[1]),
                action_dim=int(data.actions.shape[1]), horizon=cfg.horizon,
                n_obs_steps=cfg.n_obs_steps, train_episodes=train_eps.tolist(),
                val_episodes=val_eps.tolist(), train_samples=len(train), val_samples=len(val))
    if data.aux is not None:
        info.update(aux_keys=list(aux_keys), aux_dim=int(data.aux.shape[1]))
    return data, train, val, info


def add_source_flags(p):
    """--demos (.npz) or --dataset (LeRobot dir / robomimic .hdf5), --obs-keys, --action-key."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--demos", help="Meta-World demos .npz (oat-edge demos)")
    g.add_argument("--dataset", help="LeRobot dataset directory (v3.0 or v2.1) or robomimic "
                   "/ LIBERO .hdf5 file")
    p.add_argument("--obs-keys", nargs="+", default=None,
                   help="observation features, concatenated in this order (default: every "
                        "state feature the dataset declares)")
    p.add_argument("--action-key", default=None,
                   help="the action feature (default: 'action' for LeRobot, 'actions' for "
                        "robomimic)")
    p.add_argument("--filter-key", default=None,
                   help="robomimic / LIBERO: train on the demos listed in mask/<filter-key>")
    p.add_argument("--min-episode-frames", type=int, default=DataConfig.min_episode_frames,
                   help="skip (and count) dataset episodes with fewer frames")


def source_of(args):
    return args.dataset if args.dataset is not None else args.demos


def normalizer_for(x, declared=None, name="x"):
    """Min-max normalizer from the dataset's declared [low, high] when it covers the data,
    else fitted on `x` (the training split)."""
    from oat_edge.train.normalizer import Normalizer
    if declared is not None:
        lo, hi = (torch.tensor(v, dtype=torch.float32) for v in declared)
        flat = torch.as_tensor(x).reshape(-1, lo.shape[0])
        tol = 1e-5 * (1 + (hi - lo).abs())
        if bool((flat.min(0).values >= lo - tol).all() and (flat.max(0).values <= hi + tol).all()):
            return Normalizer.fit(torch.stack([lo, hi]))
        print(f"note: the dataset's declared {name} range does not cover its data; "
              f"fitting the normalizer on the data instead")
    return Normalizer.fit(x)
