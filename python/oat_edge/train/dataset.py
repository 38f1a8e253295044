"""Demos -> (observation history, action chunk) training pairs as plain tensors.

One sample per step t of every episode:
    obs     [n_obs_steps, obs_dim]  observations t-n_obs_steps+1 .. t; before the episode start
                                    the first observation is repeated
    actions [H_a, D_a]              actions t .. t+H_a-1; past the episode end the last action
                                    is repeated (the robot holds its final command)
obs_dim = 39 (Meta-World state) + len(task_names) (one-hot task id), the layout the bundle
manifest calls "obs_layout". Held-out split is by whole episodes, stratified by task, seeded.
Everything is small (~10k samples): tensors in memory, random index batches, no DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from oat_edge.train.demos import Demos, load_demos

OBS_LAYOUT = "39-d Meta-World state followed by a one-hot over `tasks`"


@dataclass
class DataConfig:
    horizon: int = 32          # H_a
    n_obs_steps: int = 2
    val_fraction: float = 0.1  # fraction of episodes (per task) held out
    seed: int = 0              # split seed


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
    if horizon < 1 or n_obs_steps < 1:
        raise ValueError(f"horizon/n_obs_steps: expected >= 1, given {horizon}/{n_obs_steps}")
    ends = demos.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    lengths = ends - starts
    ep = np.repeat(np.arange(len(ends)), lengths)            # episode of every global step
    t = np.arange(int(ends[-1]))
    s, e = starts[ep][:, None], ends[ep][:, None]
    # clipping global indices into [start, end-1] gives both paddings at once
    a_idx = np.clip(t[:, None] + np.arange(horizon)[None], s, e - 1)
    o_idx = np.clip(t[:, None] + np.arange(-n_obs_steps + 1, 1)[None], s, e - 1)
    task = demos.episode_task[ep]
    obs = make_observation(demos.obs[o_idx], task[:, None], len(demos.task_names))
    return Chunks(obs=torch.from_numpy(np.ascontiguousarray(obs)),
                  actions=torch.from_numpy(np.ascontiguousarray(demos.actions[a_idx])),
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


def load_dataset(demos, cfg: DataConfig = DataConfig()):
    """demos: path or Demos -> (train Chunks, val Chunks, info dict)."""
    if not isinstance(demos, Demos):
        demos = load_demos(demos)
    chunks = build_chunks(demos, cfg.horizon, cfg.n_obs_steps)
    train_eps, val_eps = split_episodes(demos.episode_task, cfg.val_fraction, cfg.seed)
    in_val = torch.from_numpy(np.isin(chunks.episode.numpy(), val_eps))
    train, val = chunks.subset(~in_val), chunks.subset(in_val)
    if len(train) == 0:
        raise ValueError(f"dataset: expected training samples, given 0 "
                         f"({demos.num_episodes} episodes, val_fraction {cfg.val_fraction})")
    info = {"tasks": list(demos.task_names), "obs_layout": OBS_LAYOUT,
            "obs_dim": int(chunks.obs.shape[-1]), "action_dim": int(chunks.actions.shape[-1]),
            "horizon": cfg.horizon, "n_obs_steps": cfg.n_obs_steps,
            "train_episodes": train_eps.tolist(), "val_episodes": val_eps.tolist(),
            "train_samples": len(train), "val_samples": len(val)}
    return train, val, info
