"""The camera token policy: its checkpoint (the contract the exporter reads), inference, and
training it from demos with frames."""
import json
import os

import numpy as np
import pytest
import torch
from oat_edge.train.checkpoint import load_checkpoint, save_checkpoint
from oat_edge.train.demos import Demos, save_demos
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.observation import (
    CameraInput,
    ObservationEncoder,
    ObservationEncoderConfig,
    ObservationSpec,
    StateInput,
)
from oat_edge.train.pixel_policy import EncodedPolicy, PixelTokenPolicy
from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
from oat_edge.train.tokenizer import OATConfig, OATTokenizer
from oat_edge.train.vision import VisionConfig

SMALL = VisionConfig(width=8, stage_blocks=(1, 1), feature_dim=12, num_keypoints=6)
POLICY = ["--width", "32", "--layers", "1", "--heads", "2", "--batch", "8", "--warmup", "1",
          "--log-every", "1", "--eval-every", "2", "--no-progress", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tok(seed=0, action_dim=4):
    torch.manual_seed(seed)
    tok = OATTokenizer(OATConfig(action_dim=action_dim, horizon=8, enc_width=16, enc_depth=1, enc_heads=2,
                                 dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32))
    tok.set_normalizer(Normalizer.fit(torch.rand(64, action_dim) * 2 - 1))
    return tok.eval()


def _policy(seed=0):
    torch.manual_seed(seed)
    spec = ObservationSpec(2, StateInput(5, scale=[2.0] * 5, offset=[0.5] * 5),
                           (CameraInput("corner", 24, 20), CameraInput("topview", 16, 16)))
    enc = ObservationEncoder(spec, ObservationEncoderConfig(SMALL))
    tok = _tok(seed)
    ar = ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, codebook_size=tok.codebook_size,
                               num_tokens=tok.num_tokens, width=32, n_layers=1, n_heads=2))
    return PixelTokenPolicy(tok, enc, ar)


def _obs(spec, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    lead = (spec.n_obs_steps,) if batch is None else (batch, spec.n_obs_steps)
    obs = {spec.state.name: rng.normal(size=lead + (spec.state.dim,)).astype(np.float32)}
    for c in spec.cameras:
        obs[c.name] = rng.integers(0, 256, size=lead + c.shape, dtype=np.uint8)
    return obs


def test_checkpoint_is_a_state_policys_plus_the_observation_encoder_with_an_identity_normalizer():
    p = _policy()
    ck = p.checkpoint()
    state_keys = set(TokenPolicy(p.tokenizer, p.policy, Normalizer(p.policy.cfg.obs_dim)).checkpoint())
    assert set(ck) == state_keys | {"observation_encoder"}
    assert ck["observation_encoder"]["spec"] == p.spec.to_dict()
    norm = ck["obs_normalizer"]
    assert norm["scale"] == [1.0] * p.encoder.feature_dim and norm["offset"] == [0.0] * p.encoder.feature_dim
    assert ck["policy_config"]["obs_dim"] == p.encoder.feature_dim == 2 * 12 + 5


def test_checkpoint_round_trip_predicts_the_same_actions(tmp_path):
    p = _policy()
    p.save(tmp_path / "policy.pt")
    q = PixelTokenPolicy.load(tmp_path / "policy.pt")
    obs = _obs(p.spec)
    a, b = p.predict(obs, max_tokens=4, seed=7), q.predict(obs, max_tokens=4, seed=7)
    assert a.shape == (8, 4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    batched = _obs(p.spec, batch=3)
    assert q.predict(batched, seed=1).shape == (3, 8, 4)


def test_prefill_module_takes_raw_inputs_in_spec_order_and_matches_the_policy():
    p = _policy().eval()
    obs = {k: torch.as_tensor(v) for k, v in _obs(p.spec, batch=2).items()}
    mem_k, mem_v = p.prefill_module()(*(obs[n] for n in p.spec.names))
    ref_k, ref_v = p.policy.prefill(p.encoder(obs))
    torch.testing.assert_close(mem_k, ref_k)
    torch.testing.assert_close(mem_v, ref_v)


@pytest.mark.parametrize("edit, match", [
    (lambda o: o.pop("observation.images.topview"), r"missing \['observation.images.topview'\]"),
    (lambda o: o.update({"observation.images.corner": o["observation.images.corner"] / 255.0}),
     r"observation.images.corner: expected dtype uint8, got float64"),
    (lambda o: o.update({"observation.images.corner": np.moveaxis(o["observation.images.corner"], -1, 1)}),
     r"observation.images.corner: expected channels last"),
    (lambda o: o.update({"observation.state": o["observation.state"][:1]}),
     r"observation.state: expected shape \[B, 2, 5\]"),
])
def test_predict_rejects_a_bad_observation_naming_the_key(edit, match):
    p = _policy()
    obs = _obs(p.spec)
    edit(obs)
    with pytest.raises(ValueError, match=match):
        p.predict(obs)


def test_a_state_policy_checkpoint_is_refused_saying_what_it_is():
    p = _policy()
    ck = TokenPolicy(p.tokenizer, p.policy, Normalizer(p.policy.cfg.obs_dim)).checkpoint()
    with pytest.raises(ValueError, match=r"expected a camera policy's 'observation_encoder'.*TokenPolicy"):
        PixelTokenPolicy.from_checkpoint(ck)


def test_training_groups_the_image_encoders_with_the_observation_projection():
    p = _policy()
    m = EncodedPolicy(p.encoder, p.policy)
    rest, obs = m.param_groups(0.5)
    enc_ids = {id(t) for t in p.encoder.parameters()}
    assert enc_ids <= {id(t) for t in obs["params"]} and obs["lr_scale"] == 0.5
    assert id(p.policy.obs_in.weight) in {id(t) for t in obs["params"]}
    assert id(p.policy.tok_emb.weight) in {id(t) for t in rest["params"]}
    assert len(rest["params"]) + len(obs["params"]) == len(list(m.parameters()))


# -- training from demos with frames ----------------------------------------------------------

def _camera_demos(path, lengths=(12, 9, 11, 10), tasks=("reach-v3", "push-v3"), cameras=("corner",)):
    """Random-walk states and smooth actions; each frame's pixels hold its row number."""
    rng = np.random.default_rng(0)
    ends = np.cumsum(lengths).astype(np.int64)
    n = int(ends[-1])
    rows = np.arange(n)
    images = {f"observation.images.{c}": np.broadcast_to(((rows + i) % 256).astype(np.uint8)[:, None, None, None],
                                                         (n, 16, 16, 3)).copy()
              for i, c in enumerate(cameras)}
    d = Demos(obs=rng.normal(size=(n, 39)).astype(np.float32),
              actions=np.tanh(np.cumsum(rng.normal(size=(n, 4)) * 0.1, 0)).astype(np.float32),
              episode_ends=ends, episode_task=np.arange(len(ends), dtype=np.int64) % len(tasks),
              task_names=list(tasks), meta={"seed": 0}, images=images)
    save_demos(d, path)
    return d


def _train(tmp_path, demos, *extra):
    from oat_edge.train import train_policy
    save_checkpoint(_tok().checkpoint(), tmp_path / "tok.pt")
    train_policy.main(["--demos", str(demos), "--tokenizer", str(tmp_path / "tok.pt"),
                       "--out", str(tmp_path / "pol"), "--steps", "3", *POLICY, *extra])
    return load_checkpoint(tmp_path / "pol" / "policy.pt")


def test_train_policy_with_cameras_writes_a_camera_policy_with_a_state_normalization_fitted_on_training(tmp_path):
    d = _camera_demos(tmp_path / "px.npz", cameras=("corner", "topview"))
    ck = _train(tmp_path, tmp_path / "px.npz", "--cameras", "topview", "corner", "--crop", "14", "12",
                "--val-fraction", "0.5")
    spec = ObservationSpec.from_dict(ck["observation_encoder"]["spec"])
    assert spec.names == ["observation.state", "observation.images.topview", "observation.images.corner"]
    assert [c.crop for c in spec.cameras] == [(14, 12), (14, 12)]
    assert ck["tasks"] == ["reach-v3", "push-v3"] and ck["obs_layout"].startswith("end-effector xyz")
    # the state is the robot's (end-effector xyz + gripper) and the task one-hot, min-max to
    # [-1, 1] on the training episodes only
    cfg = json.load(open(tmp_path / "pol" / "config.json"))
    train_eps = sorted(set(range(4)) - set(cfg["val_episodes"]))
    starts = np.concatenate([[0], d.episode_ends[:-1]])
    rows = np.concatenate([np.arange(starts[e], d.episode_ends[e]) for e in train_eps])
    x = d.obs[rows, :4] * np.array(spec.state.scale[:4]) + np.array(spec.state.offset[:4])
    np.testing.assert_allclose(x.min(0), -1, atol=1e-5)
    np.testing.assert_allclose(x.max(0), 1, atol=1e-5)
    p = PixelTokenPolicy.from_checkpoint(ck)
    assert p.policy.cfg.obs_dim == 2 * p.encoder.cfg.vision.feature_dim + 4 + 2
    assert len(open(tmp_path / "pol" / "metrics.jsonl").readlines()) == 3


def test_train_policy_names_an_unknown_camera_and_lists_those_there_are(tmp_path):
    _camera_demos(tmp_path / "px.npz")
    with pytest.raises(ValueError, match=r"cameras: \['wrist'\] not in the demos; they hold \['corner'\]"):
        _train(tmp_path, tmp_path / "px.npz", "--cameras", "wrist")


def test_train_policy_with_cameras_on_state_only_demos_says_how_to_record_frames(tmp_path):
    d = _camera_demos(tmp_path / "px.npz")
    d.images = {}
    save_demos(d, tmp_path / "state.npz")
    with pytest.raises(ValueError, match=r"expected camera frames \(oat-edge demos --cameras"):
        _train(tmp_path, tmp_path / "state.npz", "--cameras", "corner")


FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "fixtures")


@pytest.mark.parametrize("dataset, camera, action_dim, state_dim", [
    ("lerobot_v30", "front", 3, 6),           # written by lerobot itself; AV1 video
    ("robomimic.hdf5", "agentview", 7, 3 + 2),  # obs/agentview_image, obs/robot0_* state
])
def test_train_policy_with_cameras_reads_a_users_lerobot_or_robomimic_dataset(tmp_path, dataset, camera,
                                                                             action_dim, state_dim):
    from oat_edge.train import train_policy
    save_checkpoint(_tok(action_dim=action_dim).checkpoint(), tmp_path / "tok.pt")
    train_policy.main(["--dataset", os.path.join(FIXTURES, dataset), "--tokenizer", str(tmp_path / "tok.pt"),
                       "--out", str(tmp_path / "pol"), "--steps", "2", "--cameras", camera, "--val-fraction", "0",
                       *POLICY])
    ck = load_checkpoint(tmp_path / "pol" / "policy.pt")
    spec = ObservationSpec.from_dict(ck["observation_encoder"]["spec"])
    assert spec.names == ["observation.state", f"observation.images.{camera}"]
    n_tasks = len(ck["tasks"])
    assert spec.state.dim == state_dim + n_tasks and spec.cameras[0].shape == (32, 32, 3)
    assert ck["control_hz"] > 0
    p = PixelTokenPolicy.from_checkpoint(ck)
    assert p.predict(_obs(p.spec), seed=0).shape == (8, action_dim)


# -- auxiliary supervision of the image encoder ----------------------------------------------

def test_aux_head_adds_its_weighted_squared_error_to_the_token_loss():
    p = _policy()
    obs = {k: torch.as_tensor(v) for k, v in _obs(p.spec, batch=3).items()}
    ids = torch.randint(0, p.policy.cfg.codebook_size, (3, p.policy.cfg.num_tokens))
    aux = torch.randn(3, 5)
    m = EncodedPolicy(p.encoder, p.policy, aux_dim=5, aux_weight=0.25).eval()
    plain, _ = m.loss(obs, ids)
    with_aux, info = m.loss(obs, ids, aux=aux)
    feats = m.encoder(obs)
    expected = torch.nn.functional.mse_loss(m.aux_head(feats[:, -1]), aux)
    torch.testing.assert_close(info["aux_mse"], expected)
    torch.testing.assert_close(with_aux, plain + 0.25 * expected)
    assert EncodedPolicy(p.encoder, p.policy).aux_head is None


def test_train_policy_with_aux_keys_logs_their_error_and_keeps_the_head_out_of_the_checkpoint(tmp_path):
    _camera_demos(tmp_path / "px.npz")
    ck = _train(tmp_path, tmp_path / "px.npz", "--cameras", "corner", "--val-fraction", "0.5",
                "--aux-keys", "observation.environment_state", "--aux-weight", "0.5")
    rows = [json.loads(line) for line in open(tmp_path / "pol" / "metrics.jsonl")]
    assert all(r["aux_mse"] > 0 for r in rows) and "val_aux_mse" in rows[-1]
    cfg = json.load(open(tmp_path / "pol" / "config.json"))
    assert cfg["data"]["aux_keys"] == ["observation.environment_state"] and cfg["data"]["aux_dim"] == 39
    keys = list(ck["policy_state"]) + list(ck["observation_encoder"]["state"])
    assert not [k for k in keys if "aux" in k]
    PixelTokenPolicy.from_checkpoint(ck)  # the checkpoint is a plain camera policy's


def test_train_policy_aux_keys_of_a_demos_file_are_its_environment_state_only(tmp_path):
    _camera_demos(tmp_path / "px.npz")
    with pytest.raises(ValueError, match=r"offers only 'observation.environment_state' \(the simulator's 39-d"):
        _train(tmp_path, tmp_path / "px.npz", "--cameras", "corner", "--aux-keys", "object")


@pytest.mark.parametrize("extra, match", [
    (["--aux-keys", "observation.environment_state"], r"expected with --cameras"),
    (["--cameras", "corner", "--aux-keys", "observation.environment_state", "--aux-weight", "0"],
     r"--aux-weight: expected a finite number > 0, given 0.0"),
])
def test_train_policy_refuses_aux_keys_it_cannot_use(tmp_path, extra, match):
    _camera_demos(tmp_path / "px.npz")
    with pytest.raises(ValueError, match=match):
        _train(tmp_path, tmp_path / "px.npz", *extra)
    assert not (tmp_path / "pol").exists()  # refused before anything was written


def test_train_policy_reads_aux_keys_from_a_users_dataset_and_refuses_an_input_as_one(tmp_path):
    from oat_edge.train import train_policy
    save_checkpoint(_tok(action_dim=7).checkpoint(), tmp_path / "tok.pt")
    base = ["--dataset", os.path.join(FIXTURES, "robomimic.hdf5"), "--tokenizer", str(tmp_path / "tok.pt"),
            "--out", str(tmp_path / "pol"), "--steps", "2", "--cameras", "agentview", "--val-fraction", "0",
            "--obs-keys", "obs/robot0_gripper_qpos", *POLICY]
    train_policy.main(base + ["--aux-keys", "obs/robot0_eef_pos", "states"])
    cfg = json.load(open(tmp_path / "pol" / "config.json"))
    assert cfg["data"]["aux_keys"] == ["obs/robot0_eef_pos", "states"] and cfg["data"]["aux_dim"] > 3
    with pytest.raises(ValueError, match=r"\['obs/robot0_gripper_qpos'\] already an input of the policy"):
        train_policy.main(base + ["--aux-keys", "obs/robot0_gripper_qpos", "--force"])
