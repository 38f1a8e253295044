"""The tokenizer report: held-out reconstruction error per prefix length, of your own tokenizer."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oat_edge import cli  # noqa: E402
from oat_edge.train.demos import Demos, save_demos  # noqa: E402


def _demos(path, n_eps=8):
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 50, size=n_eps)
    obs, act = [], []
    for n in lengths:
        t = np.linspace(0, 1, n)[:, None]
        act.append(np.tanh(np.sin(6 * t + rng.normal(size=4))).astype(np.float32))
        obs.append((rng.normal(size=(1, 39)) + t).astype(np.float32))
    save_demos(Demos(np.concatenate(obs), np.concatenate(act), np.cumsum(lengths).astype(np.int64),
                     np.arange(n_eps, dtype=np.int64) % 2, ["reach-v3", "push-v3"], {}), path)
    return str(path)


def test_report_of_a_trained_tokenizer_and_refusal_to_overwrite(tmp_path, capsys):
    demos = _demos(tmp_path / "d.npz")
    for variant in ("oat", "bin"):
        assert cli.main(["train-tokenizer", "--demos", demos, "--out", str(tmp_path / variant),
                         "--variant", variant, "--steps", "3", "--threads", "1",
                         "--no-progress"]) == 0
    out = tmp_path / "report"
    argv = ["tokenizer-report", "--demos", demos, "--tokenizers", str(tmp_path / "oat"),
            str(tmp_path / "bin"), "--out", str(out)]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    oat = res["tokenizers"]["oat"]
    assert sorted(int(k) for k in oat["mse_norm"]) == list(range(1, 9))  # every prefix length
    assert all(np.isfinite(v) for v in oat["mse_norm"].values())
    assert (out / "report.md").stat().st_size > 0 and (out / "recon_mse.png").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(argv) == 2  # a second report does not silently replace the first
    assert "--force" in capsys.readouterr().err
    assert cli.main(argv + ["--force"]) == 0
