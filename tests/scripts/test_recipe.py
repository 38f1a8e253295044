"""scripts/recipe.sh reuses a stage only when its recorded command and inputs are unchanged."""
import json
import os
import subprocess

import pytest

pytest.importorskip("metaworld")
pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# THREADS=1: on a busy machine torch's spinning worker threads make a 3-step run take twice as long
TINY = {"TASKS": "reach-v3", "EPISODES": "2", "TOK_STEPS": "3", "POL_STEPS": "3", "VARIANTS": "",
        "EVAL_EPISODES": "0", "THREADS": "1"}


def _recipe(run_dir, **env):
    if not os.access(os.path.join(ROOT, ".venv", "bin", "oat-edge"), os.X_OK):
        pytest.skip("the recipe runs .venv/bin/oat-edge (make setup)")
    e = {**os.environ, **TINY, **env}
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "recipe.sh"), str(run_dir)],
                       env=e, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_rerun_reuses_unchanged_stages_and_redoes_changed_ones(tmp_path):
    run = tmp_path / "run"
    first = _recipe(run)
    for name in ("demos", "tokenizer", "policy", "export"):
        assert f" {name}\n" in first and f"{name} took " in first  # ran, and timed
    rec = json.loads((run / "policy.stage.json").read_text())
    demos = f"{run}/demos_lerobot"  # the recipe's demos are a LeRobot dataset by default
    assert "--steps" in rec["command"] and set(rec["inputs"]) == {
        f"{demos}/meta/info.json", f"{demos}/data/chunk-000/file-000.parquet",
        f"{run}/tokenizer/tokenizer.pt"}
    assert "\x1b" not in first and "it/s" not in first  # no progress bars in a log

    again = _recipe(run)
    assert again.count(": reused ") == 4 and " took " not in again.replace("recipe done", "")

    # a changed knob redoes that stage and, through the changed checkpoint, the ones after it
    changed = _recipe(run, POL_STEPS="4")
    assert "== 1/5 demos: reused" in changed and "== 2/5 tokenizer: reused" in changed
    assert "== 3/5 policy: redo, the command or its inputs changed" in changed
    assert "== 4/5 export: redo" in changed
    redone = json.loads((run / "policy.stage.json").read_text())
    assert redone["command"][redone["command"].index("--steps") + 1] == "4"
    assert redone["inputs"] == rec["inputs"]  # same demos and tokenizer, new flags


def test_a_stage_output_without_a_record_is_redone_not_trusted(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "demos.npz").write_bytes(b"left over from another run")
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "recipe.sh"), str(run)],
                         env={**os.environ, **TINY, "EPISODES": "0", "DATA": "npz"},
                         capture_output=True,
                         text=True, timeout=300)
    assert "== 1/5 demos: redo, " in out.stdout and "has no record" in out.stdout
    assert out.returncode != 0  # EPISODES=0 is refused by the demos command itself
    assert not (run / "demos.stage.json").exists()
