"""The camera bundle benchmark: stage breakdown of act(), C++ vs PyTorch eager of the same model."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from oat_edge.measure import camera_bench  # noqa: E402


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    """(bundle dir, PixelTokenPolicy) of the tiny two-camera bundle, exported by the real exporter."""
    pytest.importorskip("oat_export")
    from oat_edge.train.pixel_policy import PixelTokenPolicy
    from oat_export import export_bundle
    from oat_export.policy_checkpoint import policy_from_checkpoint
    from tiny_pixel_bundle import tiny_pixel_checkpoint

    tp, enc = policy_from_checkpoint(tiny_pixel_checkpoint(("corner", "topview"), size=32))
    out = str(tmp_path_factory.mktemp("pixel") / "bundle")
    export_bundle(tp, out, check_parity=False, observation_encoder=enc)
    return out, PixelTokenPolicy(tp.tokenizer, enc, tp.policy).eval()


def _spec(pixel_policy):
    return pixel_policy.encoder.spec.to_dict()


def test_preprocessing_cut_from_the_prefill_graph_is_the_encoders_crop_and_normalization(pixel):
    import os

    import onnxruntime as ort

    bundle, pp = pixel
    obs = camera_bench.random_observation(_spec(pp), seed=3)
    cams = [c.name for c in pp.encoder.spec.cameras]
    graph = camera_bench.preprocess_graph(os.path.join(bundle, "policy_prefill.onnx"), cams)
    assert [i.name for i in graph.graph.input] == cams
    assert not [n for n in graph.graph.node if n.op_type == "Conv"]  # stops before the encoder
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: obs[n][None] for n in cams})
    want = camera_bench.EagerStages(pp).preprocess(obs)
    assert len(got) == 2
    for g, w in zip(got, want):
        assert g.shape == tuple(w.shape) and np.abs(g - w.numpy()).max() < 1e-6


def test_eager_stages_compute_what_the_pixel_policy_predicts(pixel):
    _, pp = pixel
    obs = camera_bench.random_observation(_spec(pp), seed=1)
    for k in (1, 4):
        actions, ms = camera_bench.EagerStages(pp).act(obs, k)
        want = pp.predict(obs, max_tokens=k, temperature=0.0).numpy()
        assert np.abs(actions - want).max() < 1e-6
        assert set(ms) == {"prefill", "steps", "decoder"} and all(v > 0 for v in ms.values())


def test_random_observation_fits_the_spec_and_the_state_normalizer(pixel):
    _, pp = pixel
    spec = pp.encoder.spec
    obs = camera_bench.random_observation(spec.to_dict())
    assert spec.check_batch({k: v[None] for k, v in obs.items()}) == 1
    s = spec.state
    assert np.abs(obs[s.name] * np.asarray(s.scale) + np.asarray(s.offset)).max() <= 1 + 1e-5


def test_camera_bench_breaks_act_into_stages_for_both_backends(pixel):
    bundle, pp = pixel
    # backend "eager": dynamo without inductor's C++ compile keeps the test fast
    res = camera_bench.run(bundle, pp, ks=(1, 4), iters=4, warmup=1, compile_backend="eager")
    tc = res["torch_compile"]
    assert "error" not in tc and set(tc["first_call_s"]) == {"1", "4"} and tc["max_abs_diff_vs_eager"] < 1e-5
    for row in res["per_k"].values():
        for b in ("cpp_runtime", "torch_eager", "torch_compile"):
            st = row[b]
            assert set(st) == set(camera_bench.STAGES) and all(st[s]["n"] == 4 for s in st)
            parts = sum(st[s]["median_ms"] for s in ("prefill", "steps", "decoder"))
            assert 0 < parts <= st["act"]["p99_ms"] * 1.5
        assert row["ort_preprocess"]["preprocess"]["n"] == 4 and row["torch_preprocess"]["preprocess"]["n"] == 4
        assert row["max_abs_diff_cpp_vs_eager"] < 1e-4  # the same model on both sides
        assert row["bound"]["ms"] > 0
    b1, b4 = res["per_k"]["1"]["bound"], res["per_k"]["4"]["bound"]
    assert b4["step_ms"] == pytest.approx(4 * b1["step_ms"])
    table = camera_bench.format_table(res)
    assert "| 4 | C++ runtime |" in table and "| 1 | PyTorch eager |" in table and "corner 32x32x3" in table
    assert "| 4 | torch.compile |" in table and "compiling in its first calls" in table


def test_camera_bench_torch_compile_row_says_why_when_compiling_fails(pixel):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("inductor needs a C++ compiler")

    bundle, pp = pixel
    res = camera_bench.run(bundle, pp, ks=(1,), iters=2, warmup=1, bounds=False, compile_backend=broken_backend)
    assert "inductor needs a C++ compiler" in res["torch_compile"]["error"]
    assert "torch_compile" not in res["per_k"]["1"] and res["per_k"]["1"]["torch_eager"]["act"]["n"] == 2
    assert "compiling failed here" in camera_bench.format_table(res)


def test_camera_bench_without_weights_times_the_cpp_side_only(pixel):
    bundle, _ = pixel
    res = camera_bench.run(bundle, None, ks=(2,), iters=2, warmup=1, bounds=False)
    row = res["per_k"]["2"]
    assert set(row) == {"cpp_runtime", "ort_preprocess"}
    assert "PyTorch" not in camera_bench.format_table(res)


def test_camera_bench_refuses_a_state_bundle(tiny_bundle):
    with pytest.raises(ValueError, match="state bundle"):
        camera_bench.run(tiny_bundle, None, ks=(1,), iters=1)


def test_bench_cli_on_a_camera_bundle_with_its_checkpoint_writes_the_breakdown(pixel, tmp_path, capsys):
    import json

    from oat_edge.measure import bench
    from oat_edge.train.checkpoint import save_checkpoint

    bundle, pp = pixel
    ck = tmp_path / "policy.pt"
    save_checkpoint(pp.checkpoint(), ck)
    out = tmp_path / "cam.json"
    argv = [bundle, "--checkpoint", str(ck), "--ks", "2", "--iters", "2", "--no-compile", "--out", str(out)]
    assert bench.main(argv) == 0
    assert "| 2 | PyTorch eager |" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["per_k"]["2"]["max_abs_diff_cpp_vs_eager"] < 1e-4 and "observation_encoder" in res["params"]
    assert (tmp_path / "cam.md").exists()


def test_bench_cli_refuses_a_state_checkpoint_for_a_camera_bundle(pixel, tmp_path, tiny_token_policy, capsys):
    from oat_edge.measure import bench

    tiny_token_policy.save(tmp_path / "state.pt")
    assert bench.main([pixel[0], "--checkpoint", str(tmp_path / "state.pt")]) == 2
    err = capsys.readouterr().err
    assert "state policy" in err and "camera bundle" in err and len(err.strip().splitlines()) == 1
