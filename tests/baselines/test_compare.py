import json

import numpy as np
import pytest
from oat_edge.baselines import compare as C


def test_entries_parse_into_rows_with_readable_labels():
    e = C.parse_entry("DP=runs/dp@ddim10,ddim100")
    assert e == {"name": "DP", "path": "runs/dp", "specs": ["ddim10", "ddim100"]}
    rows = C.build_rows([C.parse_entry("OAT=m@1,8"), C.parse_entry("FAST=f@default,greedy"), e])
    assert [r["label"] for r in rows] == ["OAT k=1", "OAT k=8", "FAST", "FAST greedy", "DP DDIM 10", "DP DDIM 100"]
    for bad in ("OAT", "=x", "OAT=m@fast", "OAT=m@ddim", "OAT=m@budget", "OAT=m@budget0", "OAT=m@budget-1",
                "OAT=m@budgetnan", "OAT=m@budgetinf"):
        with pytest.raises(ValueError, match="--entry"):
            C.parse_entry(bad)


def test_a_budget_setting_is_an_anytime_row_with_its_budget_and_no_fixed_k():
    rows = C.build_rows([C.parse_entry("OAT=m@8,budget3,budget2.5")])
    assert [r["label"] for r in rows] == ["OAT k=8", "OAT budget 3 ms", "OAT budget 2.5 ms"]
    assert [(C.row_k(r), C.row_budget(r)) for r in rows] == [(8, None), (None, 3.0), (None, 2.5)]


def test_latency_bench_runs_an_oat_budget_row_in_anytime_mode(tiny_bundle, tiny_config):
    rows = C.build_rows([C.parse_entry(f"OAT={tiny_bundle}@1,budget1000,budget0.001")])
    obs = np.zeros((2, tiny_config["n_obs_steps"], tiny_config["obs_dim"]), np.float32)
    out = C.bench_latency(rows, obs, rounds=4, log=lambda m: None)
    K = tiny_config["num_tokens"]
    assert out["OAT k=1"]["tokens_per_act"] == 1.0
    assert out["OAT budget 1000 ms"]["tokens_per_act"] == K  # a generous budget: every token
    assert out["OAT budget 0.001 ms"]["tokens_per_act"] < K  # no time at all: the fewest allowed


def test_a_budget_for_a_baseline_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "fast").mkdir()
    with pytest.raises(SystemExit):
        C.main(["--entry", f"FAST={tmp_path / 'fast'}@budget3", "--demos", "x.npz", "--out", str(tmp_path / "o")])
    assert "a latency budget needs an OAT bundle" in capsys.readouterr().err


def test_best_k_is_the_reference_entry_k_with_most_success_fewest_tokens_on_ties():
    rows = C.build_rows([C.parse_entry("OAT=m@1,2,4,8"), C.parse_entry("X=x@best")])
    summary = {"OAT k=1": {"mean_success": 0.3}, "OAT k=2": {"mean_success": 0.6},
               "OAT k=4": {"mean_success": 0.9}, "OAT k=8": {"mean_success": 0.9}}
    assert C.best_k(summary, rows) == "4"
    with pytest.raises(ValueError, match="first entry"):
        C.best_k({}, C.build_rows([C.parse_entry("OAT=m"), C.parse_entry("X=x@best")]))


def _episodes(successes, errors):
    return [{"seed": i, "success": s, "steps": 10, "errors": e, "acts": 4, "tokens": 8.0, "latency_ms_max": 1.0,
             "overruns": 0, "error_messages": ["UndecodableActions: x"] if e else []}
            for i, (s, e) in enumerate(zip(successes, errors))]


def test_summary_counts_success_per_task_and_act_errors_per_episode():
    rows = C.build_rows([C.parse_entry("FAST=f")])
    shards = [{"label": "FAST", "task": "a", "episodes": _episodes([1, 0, 0, 1], [0, 2, 0, 0])},
              {"label": "FAST", "task": "b", "episodes": _episodes([1, 1, 1, 1], [0, 0, 0, 0])}]
    s = C.summarize_eval(rows, shards, ["a", "b"])["FAST"]
    assert s["success"] == {"a": 0.5, "b": 1.0} and s["mean_success"] == 0.75
    assert s["errors_per_episode"] == 0.25 and s["episodes_with_errors"] == 0.125
    assert s["error_share_of_acts"] == 2 / 32


def test_table_and_pareto_plot_are_written_from_the_results(tmp_path):
    rows = C.build_rows([C.parse_entry(f"OAT={tmp_path}@1,8"), C.parse_entry("DP=d@ddim10")])
    ev = {r["label"]: {"success": {"a": s}, "mean_success": s, "errors_per_episode": 0.0,
                       "episodes_with_errors": 0.0, "tokens_per_act": None}
          for r, s in zip(rows, (0.4, 0.9, 0.7))}
    lat = {r["label"]: {"p50_ms": p, "p99_ms": 2 * p, "tokens_per_act": t}
           for r, p, t in zip(rows, (1.0, 3.0, 20.0), (1.0, 8.0, None))}
    res = {"tasks": ["a"], "eval": ev, "latency": lat, "rows": rows, "episodes": 5, "seed": 0, "hz": 50.0,
           "rounds": 10}
    md = C.markdown(res)
    assert "| OAT k=8 | 8.0 | 90% | **90.0%** | 3.00 / 6.00 |" in md
    budget = dict(res, rows=C.build_rows([C.parse_entry(f"OAT={tmp_path}@budget2")]),
                  eval={"OAT budget 2 ms": dict(ev["OAT k=1"], tokens_per_act=3.5)},
                  latency={"OAT budget 2 ms": dict(lat["OAT k=1"], tokens_per_act=5.0)})
    assert "| OAT budget 2 ms | 5.0 (closed loop 3.5) | 40% |" in C.markdown(budget)
    assert "| DP DDIM 10 | 10 denoiser runs | 70% |" in md
    C.pareto_plot(res, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(res)  # the results are plain JSON


def test_latency_bench_interleaves_rows_and_counts_undecodable_acts(bundles, obs):
    rows = C.build_rows([C.parse_entry(f"FAST={bundles['fast']}"), C.parse_entry(f"Bin={bundles['bin']}@4")])
    out = C.bench_latency(rows, np.stack([obs, obs + 1]), rounds=6, log=lambda m: None)
    assert set(out) == {"FAST", "Bin k=4"}
    assert out["Bin k=4"]["calls"] == 6 and out["Bin k=4"]["tokens_per_act"] == 4.0
    assert out["Bin k=4"]["undecodable_share"] == 0.0
    assert 0.0 <= out["FAST"]["undecodable_share"] <= 1.0 and out["FAST"]["p99_ms"] >= out["FAST"]["p50_ms"] > 0
