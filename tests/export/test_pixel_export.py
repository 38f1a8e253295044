"""Export of named-input (camera) bundles from a pixel policy checkpoint."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from oat_edge import manifest as mf
from oat_edge.train.checkpoint import save_checkpoint
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.observation import ObservationPrefill
from oat_export import export_bundle
from oat_export.__main__ import main as cli_main
from oat_export.named_parity import NamedOrtBundle
from oat_export.named_prefill import example_inputs
from oat_export.policy_checkpoint import policy_from_checkpoint
from oat_export.stamp import FSQ_KEY, read_stamp
from tiny_pixel_bundle import tiny_pixel_checkpoint

torch.set_num_threads(1)
NAMES = ["observation.state", "observation.images.corner", "observation.images.topview"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ck = tiny_pixel_checkpoint(("corner", "topview"), size=32, state_dim=5)
    tp, enc = policy_from_checkpoint(ck)
    out = tmp_path_factory.mktemp("pix") / "bundle"
    rep = export_bundle(tp, out, tasks=ck["tasks"], observation_encoder=enc, variants=("fp16", "int8"))
    return tp, enc, out, rep


def _manifest(bundle_dir):
    props = {p.key: p.value for p in onnx.load(str(bundle_dir / "model.onnx")).metadata_props}
    return json.loads(props[mf.MANIFEST_KEY])


def test_prefill_graph_has_one_input_per_spec_entry_named_and_typed_as_the_spec(exported):
    _, _, out, _ = exported
    s = ort.InferenceSession(str(out / "policy_prefill.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in s.get_inputs()] == [
        ("observation.state", "tensor(float)", ["B", 2, 5]),
        ("observation.images.corner", "tensor(uint8)", ["B", 2, 32, 32, 3]),
        ("observation.images.topview", "tensor(uint8)", ["B", 2, 32, 32, 3])]
    assert [o.name for o in s.get_outputs()] == ["mem_k", "mem_v"]


@pytest.mark.parametrize("batch", [1, 3])
def test_prefill_graph_on_uint8_frames_matches_pytorch(exported, batch):
    tp, enc, out, _ = exported
    args = example_inputs(enc.spec, batch=batch, seed=11)
    s = ort.InferenceSession(str(out / "policy_prefill.onnx"), providers=["CPUExecutionProvider"])
    got = s.run(None, {n: a.numpy() for n, a in zip(NAMES, args)})
    with torch.no_grad():
        want = ObservationPrefill(enc, tp.policy).eval()(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_actions_through_onnxruntime_match_pytorch(exported, batch):
    tp, enc, out, _ = exported
    args = example_inputs(enc.spec, batch=batch, seed=5)
    ob = NamedOrtBundle(str(out))
    got = ob.act({n: a.numpy() for n, a in zip(NAMES, args)}, temperature=0.0)
    with torch.no_grad():
        want = tp.predict(enc.encode(*args), temperature=0.0).numpy()
    np.testing.assert_allclose(got * ob.act_scale, want * ob.act_scale, atol=1e-4, rtol=0)


def test_export_report_parity_holds_at_batch_1_and_3(exported):
    _, _, out, rep = exported
    p = rep["parity"]
    assert rep["ok"] and p["ok"] and p["batches"] == [1, 3] and p["greedy_tokens_equal"]
    assert p["prefill_rel_err"] <= 1e-4 and p["act_max_abs_err_norm"] <= 1e-4
    assert json.loads((out / "export_report.json").read_text())["ok"]


def test_manifest_carries_the_spec_and_no_host_obs_normalization(exported):
    tp, enc, out, _ = exported
    d = _manifest(out)
    assert d["observation"] == enc.spec.to_dict()
    assert d["io"]["prefill"] == {"inputs": NAMES, "outputs": ["mem_k", "mem_v"]}
    assert "obs_scale" not in d["normalization"] and "obs_offset" not in d["normalization"]
    assert d["policy"]["obs_dim"] == enc.feature_dim == 2 * 16 + 5
    assert d["policy"]["n_obs_steps"] == d["observation"]["n_obs_steps"] == 2


def test_manifest_and_graphs_pass_the_loaders_checks(exported):
    _, _, out, _ = exported
    assert mf.load_manifest(out)["observation"]["inputs"][1]["name"] == "observation.images.corner"


def test_decoder_and_encoder_graphs_are_stamped_with_the_fsq_levels_in_every_variant(exported):
    _, _, out, _ = exported
    for d in (out, out.parent / "bundle_fp16", out.parent / "bundle_int8"):
        for f in ("decoder.onnx", "encoder.onnx"):
            assert read_stamp(str(d / f)) == [8, 5, 5, 5], (d, f, FSQ_KEY)


def test_fp16_and_int8_variants_keep_named_uint8_inputs_and_report_their_error(exported):
    _, _, out, rep = exported
    for p in ("fp16", "int8"):
        d = out.parent / f"bundle_{p}"
        assert mf.load_manifest(d)["precision"] == p
        s = ort.InferenceSession(str(d / "policy_prefill.onnx"), providers=["CPUExecutionProvider"])
        assert [(i.name, i.type) for i in s.get_inputs()][1] == ("observation.images.corner", "tensor(uint8)")
    assert rep["variants"]["fp16"]["prefill_rel_err"] < 1e-2
    assert rep["variants"]["fp16"]["greedy_token_agreement"] >= 0.9
    assert 0 < rep["variants"]["int8"]["prefill_rel_err"] < 0.2


def test_cpp_runtime_acts_on_named_inputs_like_onnxruntime(exported):
    _, enc, out, rep = exported
    oat_edge = pytest.importorskip("oat_edge")
    if "skipped" in rep["parity"]["cpp"]:
        pytest.skip(f"C++ rung: {rep['parity']['cpp']['skipped']}")
    assert rep["parity"]["cpp"].get("act_max_abs_err_norm", float("inf")) <= 1e-4, rep["parity"]["cpp"]
    policy = oat_edge.Policy(str(out), threads=1)
    ob = NamedOrtBundle(str(out))
    for batch in (1, 3):
        feed = {n: a.numpy() for n, a in zip(NAMES, example_inputs(enc.spec, batch=batch, seed=batch))}
        np.testing.assert_allclose(policy.act(feed, temperature=0.0) * ob.act_scale,
                                   ob.act(feed, temperature=0.0) * ob.act_scale, atol=1e-4, rtol=0)


# -- the command ------------------------------------------------------------------------------------

def test_export_command_writes_a_named_bundle_from_a_pixel_checkpoint(tmp_path, capsys):
    ck = tiny_pixel_checkpoint(("wrist",), size=24, state_dim=3, seed=1)
    save_checkpoint(ck, tmp_path / "policy.pt")
    assert cli_main(["--checkpoint", str(tmp_path / "policy.pt"), "--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["parity"]["ok"]
    d = mf.load_manifest(tmp_path / "b")
    assert [i["name"] for i in d["observation"]["inputs"]] == ["observation.state", "observation.images.wrist"]


def _malformed(edit):
    ck = tiny_pixel_checkpoint(("corner",), size=24, state_dim=3)
    edit(ck)
    return ck


@pytest.mark.parametrize("edit, says", [
    (lambda ck: ck["observation_encoder"]["spec"]["inputs"][1].update(dtype="float32"),
     ["observation.images.corner", "uint8"]),
    (lambda ck: ck["observation_encoder"]["spec"]["inputs"][1].update(shape=[3, 24, 24]),
     ["observation.images.corner", "channels last"]),
    (lambda ck: ck["observation_encoder"]["spec"]["inputs"][1].update(crop=[32, 32]),
     ["observation.images.corner.crop", "at most the frame size"]),
    (lambda ck: ck["observation_encoder"]["spec"]["inputs"][1].update(name="observation.images.a b"),
     ["camera 'a b'", "letters, digits"]),
    (lambda ck: ck["observation_encoder"]["spec"].update(n_obs_steps=3),
     ["observation_encoder", "n_obs_steps"]),
    (lambda ck: ck["observation_encoder"].pop("config"),
     ["observation_encoder", "['config', 'spec', 'state']"]),
    (lambda ck: ck["observation_encoder"]["spec"]["inputs"][0].update(
        shape=[4], normalize={"scale": [1.0] * 4, "offset": [0.0] * 4}),
     ["observation_encoder", "width 19", "got 20"]),
    (lambda ck: ck["observation_encoder"]["config"]["vision"].update(width=4),
     ["observation_encoder.state", "do not fit"]),
    (lambda ck: ck.update(obs_normalizer=Normalizer.fit(torch.randn(20, 3 + 16)).to_dict()),
     ["obs_normalizer", "identity"]),
])
def test_a_malformed_pixel_checkpoint_is_a_clear_error(tmp_path, capsys, edit, says):
    save_checkpoint(_malformed(edit), tmp_path / "policy.pt")
    assert cli_main(["--checkpoint", str(tmp_path / "policy.pt"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oat_export: error: ") and err.count("\n") == 1, err
    for s in says:
        assert s in err, err
    assert not (tmp_path / "b").exists()


def test_fixture_script_writes_the_camera_bundle_the_runtime_tests_load(tmp_path, child_env):
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "tiny_pixel_bundle.py")
    r = subprocess.run([sys.executable, script, str(tmp_path / "b"), "--cameras", "wrist", "--size", "24",
                        "--state-dim", "3"], capture_output=True, text=True, env=child_env, timeout=120)
    assert r.returncode == 0, r.stderr
    d = mf.load_manifest(tmp_path / "b")
    assert [(i["name"], i["shape"]) for i in d["observation"]["inputs"]] == [
        ("observation.state", [3]), ("observation.images.wrist", [24, 24, 3])]
