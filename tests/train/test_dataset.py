import os

import numpy as np
import pytest
import torch
from oat_edge.train.dataset import (
    DataConfig,
    build_chunks,
    load_dataset,
    load_pixel_dataset,
    make_observation,
    split_episodes,
)
from oat_edge.train.demos import Demos, save_demos


def _demos(lengths=(3, 5), tasks=(0, 1), task_names=("reach-v3", "push-v3")):
    """obs[:, 0] = global step, actions[:, 0] = global step + 100: values name their source."""
    ends = np.cumsum(lengths).astype(np.int64)
    n = int(ends[-1])
    obs = np.zeros((n, 39), np.float32)
    obs[:, 0] = np.arange(n)
    act = np.zeros((n, 4), np.float32)
    act[:, 0] = np.arange(n) + 100
    return Demos(obs, act, ends, np.asarray(tasks, np.int64), list(task_names), {})


def test_action_chunks_repeat_the_last_action_past_the_episode_end():
    c = build_chunks(_demos(), horizon=4, n_obs_steps=2)
    assert c.actions.shape == (8, 4, 4)
    # episode 0 = steps 0..2: chunk at t=1 is 1,2,2,2 (never crosses into episode 1)
    assert c.actions[1, :, 0].tolist() == [101, 102, 102, 102]
    # episode 1 = steps 3..7: chunk at t=3 is fully inside, at t=7 all copies of the last action
    assert c.actions[3, :, 0].tolist() == [103, 104, 105, 106]
    assert c.actions[7, :, 0].tolist() == [107, 107, 107, 107]


def test_obs_history_ends_at_t_and_repeats_the_first_obs_before_the_start():
    c = build_chunks(_demos(), horizon=4, n_obs_steps=3)
    assert c.obs.shape == (8, 3, 39 + 2)
    assert c.obs[0, :, 0].tolist() == [0, 0, 0]
    assert c.obs[2, :, 0].tolist() == [0, 1, 2]
    assert c.obs[3, :, 0].tolist() == [3, 3, 3]  # episode 1 starts: nothing from episode 0
    assert c.obs[4, :, 0].tolist() == [3, 3, 4]


def test_observation_is_state_followed_by_task_one_hot():
    c = build_chunks(_demos(), horizon=2, n_obs_steps=1)
    assert c.obs[0, 0, 39:].tolist() == [1.0, 0.0]   # episode 0 is task 0
    assert c.obs[5, 0, 39:].tolist() == [0.0, 1.0]   # episode 1 is task 1
    assert c.task.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    o = make_observation(np.ones((2, 39)), 1, 3)
    assert o.shape == (2, 42) and o[:, 39:].tolist() == [[0, 1, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="task_index"):
        make_observation(np.ones(39), 3, 3)


def test_held_out_split_is_by_episode_disjoint_stratified_and_seeded():
    ep_task = np.repeat([0, 1, 2], 10)
    tr, va = split_episodes(ep_task, 0.2, seed=1)
    assert set(tr).isdisjoint(va) and sorted(set(tr) | set(va)) == list(range(30))
    assert [int((ep_task[va] == t).sum()) for t in range(3)] == [2, 2, 2]
    tr2, va2 = split_episodes(ep_task, 0.2, seed=1)
    assert va.tolist() == va2.tolist()
    assert va.tolist() != split_episodes(ep_task, 0.2, seed=2)[1].tolist()


def test_load_dataset_keeps_every_step_of_a_held_out_episode_out_of_training(tmp_path):
    lengths = [4, 6, 5, 7, 3, 6]
    d = _demos(lengths, tasks=[0, 0, 0, 1, 1, 1])
    save_demos(d, tmp_path / "d.npz")
    train, val, info = load_dataset(tmp_path / "d.npz", DataConfig(horizon=4, n_obs_steps=2,
                                                                   val_fraction=0.34, seed=0))
    assert len(train) + len(val) == sum(lengths)
    assert set(train.episode.tolist()).isdisjoint(val.episode.tolist())
    assert set(val.episode.tolist()) == set(info["val_episodes"])
    assert info["obs_dim"] == 41 and info["tasks"] == ["reach-v3", "push-v3"]
    assert train.obs.dtype == torch.float32 and train.actions.shape[1:] == (4, 4)
    half = train.shard(1, 2)
    assert torch.equal(half.obs, train.obs[1::2])


def test_val_fraction_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="val_fraction"):
        split_episodes(np.zeros(4, np.int64), 1.0, 0)


# ------------------------------------------------------------------ training from a dataset

V30 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "data", "fixtures", "lerobot_v30")  # written by lerobot itself
TINY = ["--steps", "3", "--batch", "8", "--warmup", "1", "--log-every", "1", "--eval-every", "2",
        "--no-progress", "--val-fraction", "0.34", "--threads", "1"]


def test_a_lerobot_dataset_gives_the_same_samples_as_the_npz_demos(tmp_path):
    from oat_edge.train.demos import save_lerobot
    d = _demos(lengths=(6, 4, 7), tasks=(0, 1, 0))
    save_demos(d, tmp_path / "d.npz")
    save_lerobot(d, tmp_path / "lerobot")
    cfg = DataConfig(horizon=4, n_obs_steps=2, val_fraction=0.34, seed=3)
    a_train, a_val, a_info = load_dataset(tmp_path / "d.npz", cfg)
    b_train, b_val, b_info = load_dataset(str(tmp_path / "lerobot"), cfg)
    for a, b in ((a_train, b_train), (a_val, b_val)):
        assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)
        assert torch.equal(a.episode, b.episode) and torch.equal(a.task, b.task)
    assert a_info["tasks"] == b_info["tasks"] and a_info["val_episodes"] == b_info["val_episodes"]
    assert b_info["fps"] == 80.0


def test_obs_keys_are_refused_with_npz_demos(tmp_path):
    save_demos(_demos(), tmp_path / "d.npz")
    with pytest.raises(ValueError, match="obs_keys/action_key/filter_key: expected only with"):
        load_dataset(tmp_path / "d.npz", DataConfig(horizon=4), obs_keys=["observation.state"])


def test_training_from_a_lerobot_dataset_records_its_fps_layout_tasks_and_stats(tmp_path):
    from oat_edge.data import open_dataset
    from oat_edge.train import train_policy, train_tokenizer
    from oat_edge.train.policy import TokenPolicy

    train_tokenizer.main(["--dataset", V30, "--out", str(tmp_path / "tok"), "--width", "16",
                          "--enc-depth", "1", "--dec-depth", "1", "--heads", "2", "--horizon",
                          "4", *TINY])
    train_policy.main(["--dataset", V30, "--tokenizer", str(tmp_path / "tok/tokenizer.pt"),
                       "--out", str(tmp_path / "pol"), "--width", "16", "--layers", "1",
                       "--heads", "2", *TINY])
    ck = torch.load(tmp_path / "pol" / "policy.pt", weights_only=False)
    assert ck["control_hz"] == 10.0
    assert ck["tasks"] == ["pick up the cube", "open the drawer"]
    assert ck["obs_layout"] == "observation.state [6] followed by a one-hot over `tasks`"
    pol = TokenPolicy.from_checkpoint(ck)
    ds = open_dataset(V30)
    # the normalizers start from the dataset's declared min/max
    np.testing.assert_allclose(pol.tokenizer.normalizer.low.numpy(), ds.stats["action"]["min"],
                               rtol=1e-6)
    np.testing.assert_allclose(pol.obs_normalizer.high.numpy()[:6],
                               ds.stats["observation.state"]["max"], rtol=1e-6)
    assert pol.predict(np.zeros((2, 6 + 2), np.float32), max_tokens=2, seed=0).shape == (4, 3)


# -- camera datasets -----------------------------------------------------------------------------

def _frames_demos(lengths=(5, 7)):
    """State-only demos plus one camera whose frame pixels hold the row number."""
    ends = np.cumsum(lengths).astype(np.int64)
    n = int(ends[-1])
    rng = np.random.default_rng(0)
    frames = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 8, 8, 3)).copy()
    return Demos(obs=rng.normal(size=(n, 39)).astype(np.float32),
                 actions=rng.uniform(-1, 1, size=(n, 4)).astype(np.float32), episode_ends=ends,
                 episode_task=np.array([1, 0]), task_names=["a", "b"], meta={},
                 images={"observation.images.corner": frames})


def test_pixel_samples_index_the_frames_and_robot_state_of_their_history_padded_at_the_start():
    d = _frames_demos()
    data, train, val, info = load_pixel_dataset(d, DataConfig(horizon=3, n_obs_steps=2, val_fraction=0.0))
    assert len(val) == 0 and len(train) == 12 and info["cameras"] == ["observation.images.corner"]
    frames = data.frames["observation.images.corner"][train.obs_rows.numpy()]  # [M, 2, 8, 8, 3]
    assert frames.shape == (12, 2, 8, 8, 3)
    # sample t sees frames (t-1, t) of its own episode; episode starts repeat their first frame
    np.testing.assert_array_equal(frames[:, :, 0, 0, 0], [[0, 0], [0, 1], [1, 2], [2, 3], [3, 4],
                                                          [5, 5], [5, 6], [6, 7], [7, 8], [8, 9],
                                                          [9, 10], [10, 11]])
    # state: end-effector xyz + gripper (the 39-d state's first 4) and the episode's task one-hot
    np.testing.assert_array_equal(data.state[:, :4], d.obs[:, :4])
    np.testing.assert_array_equal(data.state[:5, 4:], [[0, 1]] * 5)
    np.testing.assert_array_equal(data.state[5:, 4:], [[1, 0]] * 7)
    np.testing.assert_array_equal(train.actions[4].numpy(), d.actions[[4, 4, 4]])  # held last action


def test_state_training_on_camera_demos_sees_the_same_chunks_as_without_frames(tmp_path):
    d = _frames_demos()
    save_demos(d, tmp_path / "px.npz")
    d.images = {}
    save_demos(d, tmp_path / "state.npz")
    a, _, _ = load_dataset(str(tmp_path / "px.npz"), DataConfig(horizon=3, val_fraction=0.0))
    b, _, _ = load_dataset(str(tmp_path / "state.npz"), DataConfig(horizon=3, val_fraction=0.0))
    torch.testing.assert_close(a.obs, b.obs)
    torch.testing.assert_close(a.actions, b.actions)
