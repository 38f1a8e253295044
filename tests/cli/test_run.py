"""`oat-edge run`: options refused before the robot moves, a run where nothing worked fails,
and Ctrl-C / SIGTERM stop it promptly with the summary of what ran written."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from oat_edge import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(ROOT, "models", "oat-metaworld-mt3")


class BrokenPolicy:
    """Meta-World shaped, accepts every option, fails every act()."""

    def __init__(self, *a, **k):
        self.info = {"tasks": ["reach-v3"], "n_obs_steps": 2, "obs_dim": 40, "horizon": 4,
                     "action_dim": 4, "n_action_steps": 2,
                     "action_low": [-1] * 4, "action_high": [1] * 4}

    def check_options(self, **kw):
        pass

    def act(self, obs, return_stats=False, **kw):
        raise RuntimeError("inference backend lost")


def test_run_exits_nonzero_when_every_inference_failed(tmp_path, capsys, monkeypatch):
    pytest.importorskip("metaworld")
    import oat_edge
    monkeypatch.setattr(oat_edge, "Policy", BrokenPolicy)
    rc = cli.main(["run", "b", "--cycles", "20", "--hz", "200", "--quiet",
                   "--json", str(tmp_path / "s.json")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no inference succeeded in 20 cycles" in err and "inference backend lost" in err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["chunks_used"] == 0 and s["held"] == 20 and s["errors"] >= 1


@pytest.fixture(scope="module")
def shipped_policy():
    import oat_edge
    return oat_edge.Policy(BUNDLE)


def _act_error(policy, **opt):
    from oat_edge.errors import InputError
    obs = np.zeros((policy.info["n_obs_steps"], policy.info["obs_dim"]), np.float32)
    with pytest.raises(InputError) as e:
        policy.act(obs, **opt)
    return str(e.value)


@pytest.mark.parametrize("flags,opt", [
    (["--max-tokens", "9"], {"max_tokens": 9}),
    (["--top-k", "5000"], {"top_k": 5000}),
    (["--temperature", "-1"], {"temperature": -1.0}),
])
def test_impossible_options_stop_run_with_the_error_act_would_give(flags, opt, shipped_policy,
                                                                    capsys):
    pytest.importorskip("metaworld")
    rc = cli.main(["run", BUNDLE, "--cycles", "5", "--quiet", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"oat-edge: error: {_act_error(shipped_policy, **opt)}\n"


def test_receding_horizon_beyond_the_chunk_stops_run_before_the_first_step(capsys):
    pytest.importorskip("metaworld")
    rc = cli.main(["run", BUNDLE, "--cycles", "5", "--quiet", "--n-action-steps", "33"])
    err = capsys.readouterr().err
    assert rc == 2 and "n_action_steps: expected an int in 1..32" in err and err.count("\n") == 1


def test_a_camera_bundle_is_refused_in_one_line_that_says_how_to_run_it(capsys):
    pytest.importorskip("metaworld")
    rc = cli.main(["run", os.path.join(os.path.dirname(BUNDLE), "oat-metaworld-pixels-mt3"), "--cycles", "5",
                   "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "named inputs ['observation.state', 'observation.images.corner'" in err and "oat-edge eval" in err


def test_unwritable_summary_path_is_refused_before_loading(tmp_path, capsys):
    rc = cli.main(["run", "no-such-bundle", "--json", str(tmp_path)])
    assert rc == 2 and "is a directory" in capsys.readouterr().err


@pytest.mark.timing
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_live_run_promptly_and_writes_what_ran(sig, tmp_path, child_env):
    pytest.importorskip("metaworld")
    out_json, out_csv = tmp_path / "s.json", tmp_path / "c.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oat_edge.cli", "run", BUNDLE, "--cycles", "1000000",
         "--json", str(out_json), "--csv", str(out_csv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
    try:
        line = proc.stdout.readline()           # the first live line: the loop is running
        assert line.startswith("cycle"), line + proc.stderr.read()
        t = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        stopped_s = time.monotonic() - t
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert stopped_s < 5.0
    s = json.loads(out_json.read_text())
    assert s["interrupted"] is True and 0 < s["cycles"] < 1000000 and s["chunks_used"] > 0
    assert len(out_csv.read_text().splitlines()) == s["cycles"] + 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]   # no temp files left
