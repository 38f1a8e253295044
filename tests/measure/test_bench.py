"""The benchmark measures all three backends side by side and reports ratios and overhead."""
from oat_edge.measure import bench


def test_bench_reports_each_backend_and_k_with_ratios_and_overhead(tiny_bundle, tiny_token_policy):
    res = bench.run(tiny_token_policy, tiny_bundle, ks=(1, 4), iters=5, warmup=1, progress=False)
    assert set(res["per_k"]) == {"1", "4"}
    for row in res["per_k"].values():
        for name in ("cpp_runtime", "ort_python", "torch_eager"):
            assert row[name]["n"] == 5 and 0 < row[name]["median_ms"] <= row[name]["p99_ms"]
        assert row["cpp_runtime"]["speedup_of_cpp"] == 1.0
        assert 0.0 <= row["cpp_overhead_frac_median"] < 1.0
    table = bench.format_table(res)
    assert "| 4 |" in table and "PyTorch" in table


def test_bench_cli_rejects_k_outside_the_model_and_bad_iters(capsys):
    assert bench.main(["--iters", "0"]) == 2
    assert "--iters" in capsys.readouterr().err


def test_bench_checks_its_output_paths_before_timing_anything(tmp_path, capsys):
    assert bench.main(["--out", str(tmp_path)]) == 2  # a directory where the JSON file goes
    err = capsys.readouterr().err
    assert "is a directory" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "f").write_text("")
    assert bench.main(["--bundle-out", str(tmp_path / "f")]) == 2
    assert "is a file, expected a directory" in capsys.readouterr().err
