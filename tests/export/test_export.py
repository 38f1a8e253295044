import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from oat_edge import manifest as mf
from oat_edge.ort_reference import OrtBundle
from oat_edge.train.bin_tokenizer import BinTokenizer
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
from oat_edge.train.tokenizer import OATConfig, OATTokenizer
from oat_export import check_parity, export_bundle
from oat_export.__main__ import main as cli_main

torch.set_num_threads(1)
OBS, T, H, D, K = 5, 2, 8, 3, 4


def tiny_token_policy():
    torch.manual_seed(0)
    tok = OATTokenizer(OATConfig(action_dim=D, horizon=H, num_tokens=K, enc_width=16, enc_depth=1, enc_heads=2,
                                 dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32))
    tok.set_normalizer(Normalizer.fit(torch.randn(50, H, D)))
    with torch.no_grad():  # non-zero heads so decoded actions depend on the ids
        tok.encoder.head.weight.normal_(0, 0.5)
        tok.decoder.head.weight.normal_(0, 0.5)
    pol = ARPolicy(PolicyConfig(obs_dim=OBS, n_obs_steps=T, num_tokens=K, width=16, n_layers=2, n_heads=2,
                                n_action_steps=4))
    with torch.no_grad():
        pol.tok_emb.weight.normal_(0, 0.5)  # peaked logits: greedy tokens are not near-ties
    return TokenPolicy(tok, pol, Normalizer.fit(torch.randn(50, T, OBS) * 2)).eval()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tp = tiny_token_policy()
    out = tmp_path_factory.mktemp("b") / "bundle"
    rep = export_bundle(tp, out, tasks=["reach-v3"], obs_layout="5-d test", variants=("fp16", "int8"))
    return tp, out, rep


def test_export_writes_checked_graphs_and_passes_parity(bundle):
    tp, out, rep = bundle
    for f in ("model.onnx", "policy_prefill.onnx", "decoder.onnx", "encoder.onnx"):
        onnx.checker.check_model(str(out / f))
    assert rep["ok"] and rep["parity"]["greedy_tokens_equal"]
    assert rep["parity"]["step_logits_rel_err"] <= 1e-4 and rep["parity"]["decoder_max_abs_err"] <= 1e-4
    assert json.loads((out / "export_report.json").read_text())["ok"]


def test_manifest_records_model_and_normalizers(bundle):
    tp, out, _ = bundle
    d = mf.load_manifest(out)
    assert d["tokenizer"] == {"kind": "oat", "num_tokens": K, "fsq_levels": [8, 5, 5, 5], "codebook_size": 1000,
                              "horizon": H, "action_dim": D}
    assert d["policy"]["n_layers"] == 2 and d["policy"]["head_dim"] == 8 and d["policy"]["obs_dim"] == OBS
    assert np.allclose(d["normalization"]["obs_scale"], tp.obs_normalizer.scale.numpy())
    assert np.allclose(d["normalization"]["action_low"], tp.tokenizer.normalizer.low.numpy())
    assert d["tasks"] == ["reach-v3"] and d["precision"] == "fp32"


def _io(path):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ({i.name: (i.type, i.shape) for i in s.get_inputs()}, {o.name: (o.type, o.shape) for o in s.get_outputs()})


def test_graph_io_matches_design_contract(bundle):
    _, out, _ = bundle
    i, o = _io(out / "model.onnx")
    assert list(i) == ["token", "step", "past_k", "past_v", "mem_k", "mem_v"]
    assert list(o) == ["logits", "new_k", "new_v"]
    assert i["token"] == ("tensor(int64)", ["B"]) and i["step"] == ("tensor(int64)", [1])
    assert i["past_k"] == ("tensor(float)", [2, "B", 2, K, 8]) and i["mem_v"] == ("tensor(float)", [2, "B", 2, T, 8])
    assert o["logits"] == ("tensor(float)", ["B", 1001]) and o["new_k"] == ("tensor(float)", [2, "B", 2, 1, 8])
    i, o = _io(out / "policy_prefill.onnx")
    assert i == {"obs": ("tensor(float)", ["B", T, OBS])}
    i, o = _io(out / "decoder.onnx")
    assert i == {"codes": ("tensor(float)", ["B", K, 4]), "num_tokens": ("tensor(int64)", ["B"])}
    assert o == {"actions": ("tensor(float)", ["B", H, D])}
    i, o = _io(out / "encoder.onnx")
    assert i == {"actions": ("tensor(float)", ["B", H, D])} and o == {"ids": ("tensor(int64)", ["B", K])}


def test_step_graph_stays_small_after_ort_optimization(bundle, tmp_path):
    # The per-token graph pays ORT's fixed cost and heap objects per node (DESIGN.md §5): no shape
    # arithmetic, squeezes or transposes may creep back, and a layer stays about 30 nodes.
    _, out, _ = bundle
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "step.opt.onnx")
    ort.InferenceSession(str(out / "model.onnx"), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert not {"Shape", "Squeeze", "Transpose", "ConstantOfShape"} & set(ops), sorted(set(ops))
    assert len(ops) <= 31 * 2 + 10, f"{len(ops)} nodes for 2 layers"  # measured 69


@pytest.mark.parametrize("B", [1, 5])
def test_dynamic_batch_generate_and_act_match_pytorch(bundle, B):
    tp, out, _ = bundle
    ob = OrtBundle(out)
    raw = tp.obs_normalizer.unnormalize(torch.rand(B, T, OBS) * 2 - 1)
    ids = tp.policy.generate(tp.obs_normalizer.normalize(raw), temperature=1.0, seed=9)
    assert np.array_equal(ob.generate_norm(tp.obs_normalizer.normalize(raw).numpy(), seed=9), ids.numpy())
    for k in (1, K):
        ref = tp.predict(raw, max_tokens=k, seed=9).numpy()
        assert np.allclose(ob.act(raw.numpy(), max_tokens=k, seed=9), ref, atol=1e-4)


def test_parity_detects_a_model_changed_after_export(bundle):
    _, out, _ = bundle
    tp = tiny_token_policy()
    with torch.no_grad():
        tp.policy.blocks[0].proj1.weight.add_(0.5)
        tp.tokenizer.decoder.head.bias.add_(0.1)
    rep = check_parity(tp, out)
    assert not rep["ok"] and rep["step_logits_rel_err"] > 1e-4 and rep["decoder_max_abs_err"] > 1e-4


def test_variants_are_separate_bundles_with_measured_error(bundle):
    _, out, rep = bundle
    for p in ("fp16", "int8"):
        v = rep["variants"][p]
        assert mf.load_manifest(v["dir"])["precision"] == p
        assert 0.0 <= v["greedy_token_agreement"] <= 1.0 and np.isfinite(v["greedy_action_max_abs_err"])
    assert rep["variants"]["fp16"]["decoder_max_abs_err_norm"] < 1e-2
    assert rep["variants"]["fp16"]["step0_logits_rel_err"] < 1e-2
    fp32 = _weight_bytes(out / "model.onnx")
    assert _weight_bytes(f"{rep['variants']['fp16']['dir']}/model.onnx") <= 0.55 * fp32
    assert _weight_bytes(f"{rep['variants']['int8']['dir']}/model.onnx") <= 0.75 * fp32


def _weight_bytes(path):
    m = onnx.load(str(path))
    return sum(onnx.numpy_helper.to_array(t).nbytes for t in m.graph.initializer)


def test_bin_tokenizer_is_not_exportable(tmp_path):
    tp = tiny_token_policy()
    tok = BinTokenizer(D, H, bins=1000)
    tok.num_tokens = K  # shape-compatible on purpose: the kind alone must be refused
    tp.tokenizer = tok
    with pytest.raises(ValueError, match="tokenizer.kind: expected an OAT-kind tokenizer.*got 'bin'"):
        export_bundle(tp, tmp_path / "x")


def test_bad_precision_raises(tmp_path):
    with pytest.raises(ValueError, match="precision: expected one of.*got 'fp8'"):
        export_bundle(tiny_token_policy(), tmp_path / "x", precision="fp8")


def test_cli_exports_a_saved_checkpoint(tmp_path, capsys):
    tiny_token_policy().save(tmp_path / "policy.pt")
    rc = cli_main(["--checkpoint", str(tmp_path / "policy.pt"), "--out", str(tmp_path / "b"), "--precision", "int8",
                   "--tasks", "reach-v3", "push-v3"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["ok"] and "int8" in rep["variants"]
    d = mf.load_manifest(tmp_path / "b")
    assert d["precision"] == "int8" and d["tasks"] == ["reach-v3", "push-v3"]


def test_export_cli_missing_checkpoint_exits_2_with_a_clear_message(tmp_path, capsys):
    from oat_export.__main__ import main

    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and "not found" in err
    assert not (tmp_path / "b").exists()
