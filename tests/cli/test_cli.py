import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from oat_edge import cli


def test_help_lists_every_subcommand_and_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for sub in ("demos", "train-tokenizer", "train-policy", "export", "eval", "bench", "run",
                "inspect"):
        assert sub in out


@pytest.mark.parametrize("sub", ["eval", "run", "inspect"])
def test_subcommand_help_exits_zero(sub, capsys):
    assert cli.main([sub, "--help"]) == 0
    assert "bundle" in capsys.readouterr().out


def test_no_subcommand_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["frobnicate"], ["eval", "b", "--episodes", "0"],
                                  ["eval", "b", "--ks", "x"], ["run", "b", "--hz", "-5"],
                                  ["run", "b", "--rt-priority", "100"], ["run", "b", "--device", "gpu"],
                                  ["run", "b", "--rt-memory", "yes"], ["eval"]])
def test_bad_arguments_exit_2_with_usage_not_traceback(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_missing_bundle_is_one_line_error(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("oat-edge: error:") and "nope" in err[0]


def test_inspect_prints_manifest_summary_and_json(tiny_bundle, capsys):
    from oat_edge import manifest as mf
    assert cli.main(["inspect", str(tiny_bundle)]) == 0
    out = capsys.readouterr().out
    assert "K=4" in out and "tiny-v0" in out and "obs=2x5" in out
    assert cli.main(["inspect", os.path.join(tiny_bundle, "model.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == mf.load_manifest(tiny_bundle)


def test_forwarded_subcommand_gets_its_arguments_and_exit_code(monkeypatch):
    seen = {}
    fake = types.ModuleType("fake_trainer")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 3
    monkeypatch.setitem(sys.modules, "fake_trainer", fake)
    monkeypatch.setitem(cli.FORWARD, "demos", ("fake_trainer", "main", "x", "train"))
    assert cli.main(["demos", "--out", "d.npz", "--help"]) == 3
    assert seen["argv"] == ["--out", "d.npz", "--help"]


def test_forwarded_subcommand_without_its_dependency_explains_the_install(monkeypatch, capsys):
    monkeypatch.setitem(cli.FORWARD, "train-policy",
                        ("no_such_module_xyz", "main", "x", "train"))
    assert cli.main(["train-policy"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'oat_edge[train]'" in err and "Traceback" not in err


def test_help_and_inspect_do_not_import_torch():
    code = ("import sys; from oat_edge.cli import main; main(['--help']); "
            "main(['inspect', '/nonexistent']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_run_rejects_a_bundle_that_is_not_for_meta_world(tmp_path, capsys, monkeypatch):
    pytest.importorskip("metaworld")

    class P:
        def __init__(self, *a, **k):
            self.info = {"tasks": ["reach-v3"], "n_obs_steps": 2, "obs_dim": 5,
                         "horizon": 4, "action_dim": 4}

    import oat_edge
    monkeypatch.setattr(oat_edge, "Policy", P)
    assert cli.main(["run", "b", "--cycles", "1"]) == 2
    assert "obs_dim 5" in capsys.readouterr().err


def test_run_drives_the_sim_at_fixed_rate_and_writes_summary(tmp_path, capsys, monkeypatch):
    pytest.importorskip("metaworld")

    class ExpertPolicy:
        def __init__(self, *a, **k):
            from metaworld.policies import ENV_POLICY_MAP
            self.expert = ENV_POLICY_MAP["reach-v3"]()
            self.info = {"tasks": ["reach-v3"], "n_obs_steps": 2, "obs_dim": 40, "horizon": 4,
                         "action_dim": 4, "n_action_steps": 1,
                         "action_low": [-1] * 4, "action_high": [1] * 4}

        def act(self, obs, return_stats=False, **kw):
            a = self.expert.get_action(np.asarray(obs[-1, :39], dtype=np.float64))
            return np.repeat(a[None], 4, axis=0), {"tokens_used": 8}

    import oat_edge
    monkeypatch.setattr(oat_edge, "Policy", ExpertPolicy)
    rc = cli.main(["run", "b", "--cycles", "150", "--hz", "100", "--quiet",
                   "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "c.csv")])
    assert rc == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["cycles"] == 150 and s["errors"] == 0
    assert s["episodes"] >= 1 and s["successes"] == s["episodes"]  # reach is solved quickly
    assert s["telemetry"] == "absent"
    assert json.loads(capsys.readouterr().out)["cycles"] == 150


def test_run_rt_memory_prepares_memory_before_loading_the_policy(capsys, monkeypatch):
    pytest.importorskip("metaworld")
    calls = []

    class P:
        def __init__(self, *a, **k):
            calls.append("policy")
            self.info = {"tasks": ["reach-v3"], "n_obs_steps": 2, "obs_dim": 5,
                         "horizon": 4, "action_dim": 4}

    import oat_edge
    import oat_edge.realtime
    monkeypatch.setattr(oat_edge, "Policy", P)
    monkeypatch.setattr(oat_edge.realtime, "prepare_realtime_memory",
                        lambda lock_memory=True: calls.append("memory") or {"message": "pinned"})
    assert cli.main(["run", "b", "--cycles", "1", "--rt-memory"]) == 2  # obs_dim 5: refused later
    assert calls == ["memory", "policy"]
    assert "rt memory: pinned" in capsys.readouterr().err


@pytest.mark.parametrize("flags,msg", [(["--record", "-1"], "record must be a number of episodes"),
                                       (["--record", "1", "--record-dir", "FILE/videos"], "is a file")])
def test_eval_record_flags_are_checked_before_the_bundle_is_loaded(tmp_path, capsys, flags, msg):
    (tmp_path / "FILE").write_text("")
    flags = [f.replace("FILE", str(tmp_path / "FILE")) for f in flags]
    rc = cli.main(["eval", str(tmp_path / "no-bundle"), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and msg in err[0]


def test_inspect_lists_a_camera_bundles_named_inputs(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("oat_export")
    from tiny_pixel_bundle import write_tiny_pixel_bundle
    bundle = write_tiny_pixel_bundle(tmp_path / "camera", cameras=("corner", "topview"), size=32)
    assert cli.main(["inspect", bundle]) == 0
    out = capsys.readouterr().out
    assert "inputs      observation.state  float32 [5]\n" in out
    assert "            observation.images.topview  uint8 [32, 32, 3]  crop 28x28\n" in out
