"""The benchmark measures every backend side by side and reports ratios, overhead and bounds."""
import pytest
from oat_edge.measure import bench


def test_bench_reports_each_backend_and_k_with_ratios_overhead_and_bounds(tiny_bundle, tiny_token_policy):
    # backend "eager": dynamo traces the policy without inductor's C++ compile, so the test stays fast
    res = bench.run(tiny_token_policy, tiny_bundle, ks=(1, 4), iters=5, warmup=1, progress=False,
                    compile_backend="eager")
    assert set(res["per_k"]) == {"1", "4"}
    for row in res["per_k"].values():
        for name in ("cpp_runtime", "ort_python", "torch_eager", "torch_compile"):
            assert row[name]["n"] == 5 and 0 < row[name]["median_ms"] <= row[name]["p99_ms"]
            assert row[name]["ratio_to_bound"] == pytest.approx(row[name]["median_ms"] / row["bound"]["ms"])
        assert row["cpp_runtime"]["speedup_of_cpp"] == 1.0
        assert 0.0 <= row["cpp_overhead_frac_median"] < 1.0
        assert row["max_abs_diff_cpp_vs_eager"] < 1e-4  # the same model on both sides
    # four more steps cost four more step-graph bounds
    b1, b4 = res["per_k"]["1"]["bound"], res["per_k"]["4"]["bound"]
    assert b4["step_ms"] == pytest.approx(4 * b1["step_ms"]) and b4["prefill_ms"] == b1["prefill_ms"]
    tc = res["torch_compile"]
    assert "error" not in tc and set(tc["first_call_s"]) == {"1", "4"} and tc["compile_s"] > 0
    assert tc["max_abs_diff_vs_eager"] < 1e-5
    table = bench.format_table(res)
    assert "| 4 |" in table and "PyTorch" in table and "torch.compile" in table and "GEMV" in table


def test_bench_torch_compile_row_says_why_when_compiling_fails(tiny_bundle, tiny_token_policy):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler on this machine")

    res = bench.run(tiny_token_policy, tiny_bundle, ks=(1, 2), iters=3, warmup=1, progress=False,
                    compile_backend=broken_backend, bounds=False)
    assert "no C++ compiler on this machine" in res["torch_compile"]["error"]
    for row in res["per_k"].values():  # the other rows are measured all the same
        assert "torch_compile" not in row and row["torch_eager"]["n"] == 3 and "bound" not in row
    table = bench.format_table(res)
    assert "compiling failed here" in table and "no C++ compiler" in table


def test_bench_without_a_pytorch_model_times_the_bundle_alone(tiny_bundle):
    res = bench.run(None, tiny_bundle, ks=(2,), iters=3, warmup=1, progress=False, bounds=False)
    assert set(res["per_k"]["2"]) == {"cpp_runtime", "ort_python", "cpp_overhead_frac_median"}
    assert "PyTorch" not in bench.format_table(res)


def test_bench_cli_rejects_k_outside_the_model_and_bad_iters(capsys):
    assert bench.main(["--iters", "0"]) == 2
    assert "--iters" in capsys.readouterr().err


def test_bench_cli_rejects_reference_with_bundle_missing_checkpoint_and_k_outside_bundle(tiny_bundle, tmp_path, capsys):
    assert bench.main([tiny_bundle, "--camera-reference", "64"]) == 2
    assert "without BUNDLE" in capsys.readouterr().err
    assert bench.main([tiny_bundle, "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert bench.main([tiny_bundle, "--ks", "9"]) == 2
    assert "1..4" in capsys.readouterr().err


def test_bench_checks_its_output_paths_before_timing_anything(tmp_path, capsys):
    assert bench.main(["--out", str(tmp_path)]) == 2  # a directory where the JSON file goes
    err = capsys.readouterr().err
    assert "is a directory" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "f").write_text("")
    assert bench.main(["--bundle-out", str(tmp_path / "f")]) == 2
    assert "is a file, expected a directory" in capsys.readouterr().err


def test_bench_shows_when_the_pytorch_model_is_not_the_bundles(tiny_bundle):
    from tiny_bundle import tiny_token_policy

    res = bench.run(tiny_token_policy(seed=1), tiny_bundle, ks=(4,), iters=2, warmup=1, progress=False,
                    compile_backend=None, bounds=False)
    assert res["per_k"]["4"]["max_abs_diff_cpp_vs_eager"] > 1e-2
    assert "actions within" in bench.format_table(res)
