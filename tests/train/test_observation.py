import copy
import json

import numpy as np
import pytest
import torch
from oat_edge.train.observation import (
    CameraInput,
    ObservationEncoder,
    ObservationEncoderConfig,
    ObservationPrefill,
    ObservationSpec,
    StateInput,
)
from oat_edge.train.policy import ARPolicy, PolicyConfig
from oat_edge.train.vision import VisionConfig

SMALL = VisionConfig(width=8, stage_blocks=(1, 1), feature_dim=12, num_keypoints=6)


def _spec(n_obs_steps=2):
    # Two cameras of different sizes: a swapped height/width or camera order is a shape error.
    return ObservationSpec(n_obs_steps, StateInput(5, scale=[2.0, 1.0, 0.5, 4.0, 1.0],
                                                   offset=[0.1, -0.2, 0.0, 0.3, 1.0]),
                           (CameraInput("corner", 32, 40), CameraInput("topview", 24, 28, crop=(20, 24))))


def _batch(spec, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = {spec.state.name: torch.randn(b, spec.n_obs_steps, spec.state.dim, generator=g)}
    for c in spec.cameras:
        obs[c.name] = torch.randint(0, 256, (b, spec.n_obs_steps, *c.shape), dtype=torch.uint8, generator=g)
    return obs


def _encoder(spec=None, shared=False, seed=0):
    torch.manual_seed(seed)
    return ObservationEncoder(spec or _spec(), ObservationEncoderConfig(SMALL, shared_vision=shared))


# -- spec ----------------------------------------------------------------------------------------

def test_spec_round_trips_through_json_with_lerobot_names_and_channels_last_shapes():
    spec = _spec()
    d = json.loads(json.dumps(spec.to_dict()))
    assert ObservationSpec.from_dict(d) == spec
    assert [i["name"] for i in d["inputs"]] == ["observation.state", "observation.images.corner",
                                                "observation.images.topview"]
    assert d["inputs"][0]["dtype"] == "float32" and d["inputs"][0]["shape"] == [5]
    assert d["inputs"][1] == {"name": "observation.images.corner", "dtype": "uint8",
                              "shape": [32, 40, 3], "crop": [28, 35],
                              "normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    assert d["n_obs_steps"] == 2


def _bad(edit):
    d = _spec().to_dict()
    edit(d)
    return d


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["inputs"][1].update(shape=[3, 32, 40]), r"observation.images.corner.*channels last"),
    (lambda d: d["inputs"][1].update(dtype="float32"), r"observation.images.corner.*uint8"),
    (lambda d: d["inputs"][1].update(crop=[33, 20]), r"observation.images.corner.crop.*at most"),
    (lambda d: d["inputs"][1].pop("crop"), r"observation.images.corner.*crop"),
    (lambda d: d["inputs"][1]["normalize"].update(std=[0.5, 0.0, 0.5]), r"corner.normalize.std.*positive"),
    (lambda d: d["inputs"][1].update(name="observation.images.front cam"), r"front cam"),
    (lambda d: d["inputs"][1].update(lens="wide"), r"inputs\[1\].*unknown \['lens'\]"),
    (lambda d: d["inputs"][0].update(dtype="float64"), r"observation.state.*float32"),
    (lambda d: d["inputs"][0]["normalize"].update(scale=[1.0] * 4), r"observation.state.normalize.scale.*5"),
    (lambda d: d["inputs"][0]["normalize"].update(scale=[1.0, 0.0, 1.0, 1.0, 1.0]), r"scale.*non-zero"),
    (lambda d: d["inputs"][0]["normalize"].update(offset=[float("nan")] * 5), r"offset.*finite"),
    (lambda d: d["inputs"].pop(0), r"expected a 'observation.state' input"),
    (lambda d: d["inputs"].append(copy.deepcopy(d["inputs"][1])), r"distinct camera names.*corner"),
    (lambda d: d["inputs"].append({**d["inputs"][0], "name": "observation.velocity"}), r"observation.velocity"),
    (lambda d: d.update(n_obs_steps=0), r"n_obs_steps"),
    (lambda d: d.pop("inputs"), r"missing \['inputs'\]"),
])
def test_a_bad_spec_dict_is_rejected_naming_the_key(edit, match):
    with pytest.raises(ValueError, match=match):
        ObservationSpec.from_dict(_bad(edit))


def test_default_crop_is_seven_eighths_of_the_frame():
    assert CameraInput("corner", 64, 64).crop == (56, 56)


@pytest.mark.parametrize("edit, match", [
    (lambda o: o.pop("observation.images.topview"), r"missing \['observation.images.topview'\]"),
    (lambda o: o.update({"observation.images.wrist": o["observation.images.corner"]}),
     r"unexpected \['observation.images.wrist'\]"),
    (lambda o: o.update({"observation.images.corner": torch.zeros(3, 2, 32, 32, 3, dtype=torch.uint8)}),
     r"observation.images.corner: expected shape \[B, 2, 32, 40, 3\]"),
    (lambda o: o.update({"observation.images.corner": torch.zeros(3, 2, 3, 32, 40, dtype=torch.uint8)}),
     r"observation.images.corner: expected channels last"),
    (lambda o: o.update({"observation.images.corner": torch.zeros(3, 2, 32, 40, 3)}),
     r"observation.images.corner: expected dtype uint8, got float32"),
    (lambda o: o.update({"observation.images.topview": torch.zeros(3, 1, 24, 28, 3, dtype=torch.uint8)}),
     r"observation.images.topview: expected shape \[B, 2, 24, 28, 3\].*n_obs_steps"),
    (lambda o: o.update({"observation.state": torch.zeros(3, 2, 4)}), r"observation.state: expected shape"),
    (lambda o: o.update({"observation.state": torch.zeros(4, 2, 5)}), r"observation.images.corner: expected batch 4"),
])
def test_a_bad_batch_is_rejected_naming_the_key(edit, match):
    obs = _batch(_spec())
    edit(obs)
    with pytest.raises(ValueError, match=match):
        _encoder()(obs)


def test_check_batch_accepts_numpy_arrays_too():
    obs = {k: v.numpy() for k, v in _batch(_spec(), b=4).items()}
    assert _spec().check_batch(obs) == 4


# -- encoder ---------------------------------------------------------------------------------------

def test_features_are_each_cameras_features_then_the_normalized_state():
    spec = _spec()
    enc = _encoder(spec).eval()
    obs = _batch(spec)
    feats = enc(obs)
    assert feats.shape == (3, 2, 2 * 12 + 5) and enc.feature_dim == 29
    state = obs["observation.state"]
    want = state * torch.tensor(spec.state.scale) + torch.tensor(spec.state.offset)
    torch.testing.assert_close(feats[..., 24:], want)
    # Changing only the topview frames changes only the topview features.
    other = dict(obs, **{"observation.images.topview": _batch(spec, seed=1)["observation.images.topview"]})
    changed = (enc(other) - feats).abs().amax((0, 1)) > 0
    assert changed[12:24].all() and not changed[:12].any() and not changed[24:].any()


def test_shared_vision_uses_one_image_encoder_for_all_cameras():
    spec = ObservationSpec(2, StateInput(3), (CameraInput("a", 24, 24), CameraInput("b", 24, 24)))
    shared, own = _encoder(spec, shared=True), _encoder(spec, shared=False)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 2 * n(shared) == n(own)
    obs = _batch(spec)
    obs["observation.images.b"] = obs["observation.images.a"].clone()
    f = shared.eval()(obs)
    torch.testing.assert_close(f[..., :12], f[..., 12:24])  # same frames, same encoder
    with pytest.raises(ValueError, match="same crop size"):
        _encoder(_spec(), shared=True)


def test_training_mode_augments_and_inference_mode_is_deterministic():
    enc = _encoder()
    obs = _batch(_spec())
    enc.train()
    a = enc(obs, torch.Generator().manual_seed(0))
    b = enc(obs, torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)
    enc.eval()
    torch.testing.assert_close(enc(obs), enc(obs))


def test_the_policy_loss_trains_the_image_encoders():
    spec = _spec()
    enc = _encoder(spec)
    pol = ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, num_tokens=4, width=32, n_layers=1, n_heads=2,
                                codebook_size=10))
    loss, _ = pol.loss(enc(_batch(spec)), torch.randint(0, 10, (3, 4)))
    loss.backward()
    for cam in ("corner", "topview"):
        grad = enc.image_encoders[cam].stem[0].weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_encoder_checkpoint_restores_the_same_outputs():
    enc = _encoder().eval()
    again = ObservationEncoder.from_checkpoint(enc.checkpoint()).eval()
    obs = _batch(_spec())
    torch.testing.assert_close(again(obs), enc(obs))


def test_prefill_rejects_a_policy_sized_for_other_features():
    with pytest.raises(ValueError, match="expected obs_dim=29"):
        ObservationPrefill(_encoder(), ARPolicy(PolicyConfig(obs_dim=28, width=32, n_heads=2)))


# -- ONNX ------------------------------------------------------------------------------------------

def _export_and_run(module, spec, out_names, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    args = tuple(_batch(spec, b=3, seed=7)[n] for n in spec.names)
    path = str(tmp_path / "graph.onnx")
    dyn = {n: {0: "B"} for n in spec.names}
    torch.onnx.export(module, args, path, input_names=spec.names, output_names=out_names,
                      dynamic_axes=dyn, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        ("observation.state", "tensor(float)"), ("observation.images.corner", "tensor(uint8)"),
        ("observation.images.topview", "tensor(uint8)")]
    for b in (1, 3):
        feed = {n: a[:b].numpy() for n, a in zip(spec.names, args)}
        with torch.no_grad():
            want = module(*(a[:b] for a in args))
        want = want if isinstance(want, tuple) else (want,)
        for got, ref in zip(sess.run(None, feed), want):
            np.testing.assert_allclose(got, ref.numpy(), atol=1e-4, rtol=0)


class _Features(torch.nn.Module):
    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def forward(self, state, *frames):
        return self.enc.encode(state, *frames)


def test_observation_encoder_exports_to_onnx_taking_raw_uint8_frames(tmp_path):
    enc = ObservationEncoder(_spec(), ObservationEncoderConfig(VisionConfig(width=8, pool="avg")))
    _export_and_run(_Features(enc).eval(), enc.spec, ["features"], tmp_path)


def test_prefill_exports_to_onnx_and_matches_pytorch(tmp_path):
    torch.manual_seed(3)
    enc = _encoder()
    pol = ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, width=32, n_layers=2, n_heads=2))
    with torch.no_grad():  # larger weights than the init, so a wrong op shows in the output
        for p in enc.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    _export_and_run(ObservationPrefill(enc, pol).eval(), enc.spec, ["mem_k", "mem_v"], tmp_path)
