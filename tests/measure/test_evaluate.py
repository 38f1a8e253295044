import json

import numpy as np
import pytest

pytest.importorskip("metaworld")
pytest.importorskip("matplotlib")

from oat_edge.measure.evaluate import evaluate, markdown_table  # noqa: E402


class ExpertBackedPolicy:
    """Fake bundle: each chunk repeats the scripted expert's action for the newest state,
    truncated to fewer 'tokens' (k) by adding noise, so success should drop for k=1."""

    def __init__(self, bundle, threads=1):
        from metaworld.policies import ENV_POLICY_MAP
        self.expert = ENV_POLICY_MAP["reach-v3"]()
        self.info = {"horizon": 4, "action_dim": 4, "n_obs_steps": 2, "obs_dim": 40,
                     "n_action_steps": 1, "num_tokens": 8, "tasks": ["reach-v3"],
                     "codebook_size": 1000,
                     "manifest": {"normalization": {"action_low": [-1] * 4,
                                                    "action_high": [1] * 4}}}

    def act(self, obs, max_tokens=None, seed=None, return_stats=False, **kw):
        a = self.expert.get_action(np.asarray(obs[-1, :39], dtype=np.float64))
        if max_tokens == 1:  # a 'coarse' prefix: the arm just stays put
            a = np.zeros(4)
        chunk = np.repeat(a[None], 4, axis=0)
        return (chunk, {"tokens_used": max_tokens or 8}) if return_stats else chunk


def test_evaluate_reports_success_per_k_expert_and_writes_artifacts(tmp_path):
    res = evaluate("fake-bundle", episodes=1, ks=(1, 8), workers=1, out_dir=tmp_path,
                   policy_factory=ExpertBackedPolicy, progress=False)
    cell = res["per_task"]["reach-v3"]
    assert cell["8"]["success_rate"] == 1.0 and cell["1"]["success_rate"] == 0.0
    assert res["expert"]["reach-v3"] == 1.0
    assert cell["8"]["tokens_hist"] == {"8": sum(cell["8"]["tokens_hist"].values())}
    assert cell["8"]["latency_ms"]["p50"] >= 0 and cell["8"]["errors"] == 0
    assert res["bits"]["8"] == pytest.approx(8 * np.log2(1000))
    for name in ("results.json", "results.md", "success_vs_k.png", "latency_vs_k.png",
                 "rate_distortion.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["mean_success"] == {"1": 0.0,
                                                                                  "8": 1.0}
    assert "| reach-v3 | 0% | 100% | 100% |" in markdown_table(res)


@pytest.mark.parametrize("kw,msg", [({"ks": (0,)}, "ks must be"), ({"ks": (9,)}, "ks must be"),
                                    ({"tasks": ["push-v3"]}, "not in the bundle"),
                                    ({"episodes": 0}, "episodes"),
                                    ({"n_action_steps": 0}, "n_action_steps"),
                                    ({"n_action_steps": 5}, "n_action_steps")])
def test_evaluate_rejects_bad_arguments(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        evaluate("fake-bundle", workers=1, out_dir=tmp_path, policy_factory=ExpertBackedPolicy,
                 progress=False, **kw)


class CountingPolicy(ExpertBackedPolicy):
    calls = 0

    def act(self, obs, **kw):
        CountingPolicy.calls += 1
        return super().act(obs, **kw)


def test_evaluate_n_action_steps_overrides_the_bundles_receding_horizon(tmp_path):
    def run(**kw):
        CountingPolicy.calls = 0
        res = evaluate("fake-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path, expert=False,
                       policy_factory=CountingPolicy, progress=False, background=False,
                       force=True, **kw)
        cell = res["per_task"]["reach-v3"]["8"]
        return res["n_action_steps"], CountingPolicy.calls / cell["mean_steps"]

    steps_default, calls_per_step_default = run()
    steps_3, calls_per_step_3 = run(n_action_steps=3)
    assert (steps_default, steps_3) == (1, 3)  # the bundle's own value, then the override
    # replanning every 3 steps instead of every step: about a third of the act calls
    assert calls_per_step_3 < 0.5 * calls_per_step_default


class InterruptedPolicy(ExpertBackedPolicy):
    """Ctrl-C arrives during the third episode's inference."""
    calls = 0

    def act(self, obs, **kw):
        InterruptedPolicy.calls += 1
        if InterruptedPolicy.calls == InterruptedPolicy.stop_at:
            raise KeyboardInterrupt
        return super().act(obs, **kw)


def test_ctrl_c_saves_the_finished_episodes_and_marks_the_results(tmp_path):
    # one act per episode step with n_action_steps 1; measure two episodes' worth of calls
    InterruptedPolicy.calls, InterruptedPolicy.stop_at = 0, 10 ** 9
    evaluate("fake-bundle", episodes=2, ks=(1,), workers=1, out_dir=tmp_path / "probe",
             expert=False, policy_factory=InterruptedPolicy, progress=False, background=False,
             plots=False)
    per_two = InterruptedPolicy.calls - 3  # minus the warm-up acts
    InterruptedPolicy.calls, InterruptedPolicy.stop_at = 0, 3 + per_two + 2
    res = evaluate("fake-bundle", episodes=5, ks=(8, 1), workers=1, out_dir=tmp_path / "out",
                   expert=False, policy_factory=InterruptedPolicy, progress=False,
                   background=False)
    assert res["interrupted"] is True
    cell = res["per_task"]["reach-v3"]["1"]  # ks are sorted: k=1 runs first
    assert cell["episodes_done"] == 2 and cell["interrupted"] is True
    assert "8" not in res["per_task"]["reach-v3"]  # never started
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["interrupted"] is True and saved["per_task"]["reach-v3"]["1"]["episodes_done"] == 2
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Interrupted" in md and "| – |" in md
    assert not (tmp_path / "out" / "success_vs_k.png").exists()  # no plots of a partial run
    import signal
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C still works


def test_existing_results_are_not_overwritten_without_force(tmp_path):
    from oat_edge.atomic import OutputError
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(OutputError, match="--force"):
        evaluate("fake-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path,
                 policy_factory=ExpertBackedPolicy, progress=False)
    assert (tmp_path / "results.json").read_text() == "{}"
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        evaluate("fake-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path / "file",
                 policy_factory=ExpertBackedPolicy, progress=False, force=True)


def test_full_disk_at_the_end_still_prints_the_results_and_fails_in_one_line(tmp_path, capsys,
                                                                            monkeypatch):
    import errno

    from oat_edge import atomic, cli

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    monkeypatch.setattr("oat_edge.Policy", ExpertBackedPolicy)
    rc = cli.main(["eval", "fake-bundle", "--episodes", "1", "--ks", "8", "--workers", "1",
                   "--no-expert", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 2 and "| reach-v3 | 100% |" in out  # what was measured is not lost
    assert "no space left on device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith(".")]


def test_worker_processes_run_their_episodes_when_sigint_is_ignored_from_the_start(tmp_path):
    # `oat-edge eval ... &` in a script, or nohup, starts the process with SIGINT ignored; the
    # workers inherit that, and it must not read as an interruption (it once ran no episode).
    import signal
    import subprocess
    import sys
    code = f"""
import json, sys
sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
from test_evaluate import ExpertBackedPolicy
from oat_edge.measure.evaluate import evaluate
res = evaluate("fake-bundle", episodes=1, ks=(8,), workers=2, out_dir={str(tmp_path)!r},
               expert=False, policy_factory=ExpertBackedPolicy, progress=False, plots=False)
print(json.dumps([res["interrupted"], res["per_task"]["reach-v3"]["8"]["episodes_done"]]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[false, 1]"


class TemperatureSpy(ExpertBackedPolicy):
    seen: set = set()

    def act(self, obs, **kw):
        TemperatureSpy.seen.add(kw.get("temperature"))
        return super().act(obs, **kw)


def test_temperature_reaches_every_act_and_is_recorded(tmp_path):
    TemperatureSpy.seen = set()
    res = evaluate("fake-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path, expert=False,
                   policy_factory=TemperatureSpy, progress=False, background=False, temperature=0.0)
    assert TemperatureSpy.seen == {0.0} and res["temperature"] == 0.0
    assert "temperature 0." in markdown_table(res)
    TemperatureSpy.seen = set()
    res = evaluate("fake-bundle", episodes=1, ks=(8,), workers=1, out_dir=tmp_path, expert=False,
                   policy_factory=TemperatureSpy, progress=False, background=False, force=True)
    assert TemperatureSpy.seen == {None} and res["temperature"] is None  # the bundle's own


def test_an_impossible_temperature_is_refused_before_any_episode(tmp_path, tiny_bundle):
    from oat_edge import InputError
    with pytest.raises(InputError, match="temperature: expected a finite value >= 0"):
        evaluate(tiny_bundle, episodes=1, ks=(1,), workers=1, out_dir=tmp_path, progress=False,
                 temperature=-1.0)
    assert not (tmp_path / "results.json").exists()
