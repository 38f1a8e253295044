"""oat-edge eval of named-input (camera) bundles: PixelMetaWorldEnv configured from the bundle's
observation spec, the same episode loop as state bundles, frames drawn only for replans."""

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("metaworld")
pytest.importorskip("matplotlib")

from oat_edge.measure import eval_env  # noqa: E402
from oat_edge.measure.evaluate import evaluate, markdown_table  # noqa: E402

STATE = "observation.state"
CORNER, TOPVIEW = "observation.images.corner", "observation.images.topview"


def camera_spec(state_dim=5, sizes=((64, 64), (64, 64)), n_obs_steps=2):
    cams = [{"name": name, "dtype": "uint8", "shape": [h, w, 3], "crop": [h - 8, w - 8],
             "normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}}
            for name, (h, w) in zip((CORNER, TOPVIEW), sizes)]
    state = {"name": STATE, "dtype": "float32", "shape": [state_dim],
             "normalize": {"scale": [1.0] * state_dim, "offset": [0.0] * state_dim}}
    return {"n_obs_steps": n_obs_steps, "inputs": [state] + cams}


class CameraPolicy:
    """Fake camera bundle: moves the hand toward a fixed point read from observation.state and
    keeps a digest of every observation dict it is given."""
    spec = camera_spec()
    seen: list = []

    def __init__(self, bundle, threads=1):
        self.info = {"horizon": 8, "action_dim": 4, "n_action_steps": 8, "n_obs_steps": 2,
                     "obs_dim": 96, "num_tokens": 8, "codebook_size": 1000, "tasks": ["reach-v3"],
                     "observation": self.spec,
                     "manifest": {"normalization": {"action_low": [-1] * 4, "action_high": [1] * 4}}}

    def act(self, obs, max_tokens=None, seed=None, return_stats=False, **kw):
        assert isinstance(obs, dict), f"expected the named observation dict, got {type(obs)}"
        assert list(obs) == [i["name"] for i in self.spec["inputs"]]
        for i in self.spec["inputs"]:
            assert obs[i["name"]].dtype == np.dtype(i["dtype"])
            assert obs[i["name"]].shape == (2, *i["shape"])
        CameraPolicy.seen.append(hashlib.sha1(b"".join(np.ascontiguousarray(v).tobytes()
                                                       for v in obs.values())).hexdigest())
        ee = obs[STATE][-1, :3]
        a = np.r_[np.clip((np.array([0.0, 0.7, 0.2]) - ee) * 10, -1, 1), 0.0]
        chunk = np.repeat(a[None], 8, axis=0)
        return (chunk, {"tokens_used": max_tokens or 8}) if return_stats else chunk


def run_camera_eval(tmp_path, name, **kw):
    CameraPolicy.seen = []
    res = evaluate("fake-camera-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path / name,
                   expert=False, policy_factory=CameraPolicy, progress=False, plots=False, **kw)
    return res, list(CameraPolicy.seen)


def test_camera_bundle_gets_its_named_inputs_and_draws_only_the_frames_replans_read(tmp_path,
                                                                                   monkeypatch):
    res, seen = run_camera_eval(tmp_path, "skip", record=1)
    cell = res["per_task"]["reach-v3"]["8"]
    steps = cell["mean_steps"]
    assert cell["errors"] == 0 and cell["frames_refused"] == 0
    assert cell["frames_rendered"] + cell["frames_skipped"] == steps
    # each replan reads 2 frames; the one drawn while its chunk is in flight is a third
    replans = len(seen) - 3  # minus the warm-up acts
    assert steps / 8 < replans and cell["frames_rendered"] <= 3 * replans
    assert res["observation"] == CameraPolicy.spec
    assert json.loads((tmp_path / "skip" / "results.json").read_text())["observation"]["inputs"]
    assert "Camera bundle: corner, topview at 64x64, 2 steps of history; frames drawn for " \
        in markdown_table(res)
    # the video: the scene with the policy's two cameras beside it, a frame per step + the reset
    av = pytest.importorskip("av")
    with av.open(cell["videos"][0]["file"]) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == steps + 1 and frames[0].shape[1] == 256 + 128

    # Drawing every frame (and recording none) changes nothing the policy sees.
    monkeypatch.setattr(eval_env, "replan_within", lambda loop, cycles: True)
    res_all, seen_all = run_camera_eval(tmp_path, "all")
    assert res_all["per_task"]["reach-v3"]["8"]["frames_skipped"] == 0
    assert seen == seen_all


def test_in_sync_mode_exactly_the_two_history_frames_of_each_replan_are_drawn(tmp_path):
    res, seen = run_camera_eval(tmp_path, "sync", background=False)
    cell = res["per_task"]["reach-v3"]["8"]
    replans = len(seen) - 3  # minus the warm-up acts
    assert cell["errors"] == 0 and cell["frames_refused"] == 0
    assert replans == -(-cell["mean_steps"] // 8)  # a chunk of 8 executed whole, then the next
    # the first replan reads the reset frames; each later one the frames of its last 2 steps
    assert cell["frames_rendered"] == 2 * (replans - 1)


def test_a_frame_a_replan_needs_but_was_skipped_is_counted_and_the_loop_recovers(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(eval_env, "replan_within", lambda loop, cycles: False)
    res, seen = run_camera_eval(tmp_path, "never")
    cell = res["per_task"]["reach-v3"]["8"]
    assert cell["frames_refused"] >= 1 and cell["errors"] == cell["frames_refused"]
    assert "render" in cell["error_messages"][0]
    assert len(seen) > 3 + 1  # it went on planning after each refusal


@pytest.mark.parametrize("spec,msg", [
    (camera_spec(state_dim=7), "another robot"),
    (camera_spec(sizes=((64, 64), (32, 32))), "one size"),
    ({"n_obs_steps": 2, "inputs": camera_spec()["inputs"][:1]}, "no camera"),
    ({"n_obs_steps": 2, "inputs": [dict(camera_spec()["inputs"][1],
                                        name="observation.images.wrist")]}, "not in this model"),
])
def test_a_camera_bundle_meta_world_cannot_feed_is_refused_before_the_run(tmp_path, monkeypatch,
                                                                          spec, msg):
    monkeypatch.setattr(CameraPolicy, "spec", spec)
    CameraPolicy.seen = []
    with pytest.raises(ValueError, match=msg):
        evaluate("fake-camera-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path,
                 expert=False, policy_factory=CameraPolicy, progress=False)
    assert CameraPolicy.seen == [] and not (tmp_path / "results.json").exists()


@pytest.fixture(scope="module")
def reach_camera_bundle(tmp_path_factory):
    """A random-weight camera bundle shaped for Meta-World (4-d actions, task reach-v3, state
    ee xyz + gripper + one-hot, corner and topview at 32x32), written by the real exporter."""
    pytest.importorskip("torch")
    pytest.importorskip("oat_export")
    import tiny_bundle
    from oat_export import export_bundle
    from oat_export.policy_checkpoint import policy_from_checkpoint
    from tiny_pixel_bundle import tiny_pixel_checkpoint

    saved = dict(tiny_bundle.TINY)
    tiny_bundle.TINY["action_dim"] = 4  # the fixture's sizes, with Meta-World's action width
    try:
        ck = tiny_pixel_checkpoint(size=32, state_dim=5)
    finally:
        tiny_bundle.TINY.clear()
        tiny_bundle.TINY.update(saved)
    tp, enc = policy_from_checkpoint(ck)
    out = tmp_path_factory.mktemp("bundle") / "reach_camera"
    export_bundle(tp, str(out), tasks=["reach-v3"], check_parity=False, observation_encoder=enc)
    return out


def test_a_camera_bundle_runs_in_closed_loop_through_the_runtime(reach_camera_bundle, tmp_path):
    from oat_edge import Policy
    info = Policy(reach_camera_bundle).info
    assert eval_env.observation_spec(info)["inputs"][1]["name"] == CORNER
    res = evaluate(reach_camera_bundle, episodes=1, ks=(2,), workers=1, out_dir=tmp_path,
                   expert=False, progress=False, plots=False, n_action_steps=8)
    cell = res["per_task"]["reach-v3"]["2"]
    assert cell["errors"] == 0 and cell["frames_refused"] == 0, cell["error_messages"]
    assert set(cell["tokens_hist"]) == {"2"} and cell["latency_ms"]["p50"] > 0
    assert cell["frames_rendered"] < cell["frames_skipped"]
