"""The tokenizer report: held-out reconstruction error per prefix length, of your own tokenizer."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from oat_edge import cli  # noqa: E402


def test_report_of_a_trained_tokenizer_and_refusal_to_overwrite(tmp_path, capsys, write_demos):
    demos = write_demos(tmp_path / "d.npz", n_eps=8, lengths=(40, 50))
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
