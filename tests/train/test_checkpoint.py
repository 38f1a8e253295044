"""Checkpoints hold tensors and plain data only; a pickle that would run code is refused."""
import os
import pickle

import pytest
import torch
from oat_edge.train.checkpoint import load_checkpoint, save_checkpoint
from oat_edge.train.policy import TokenPolicy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "models", "oat-metaworld-mt3.pt")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch " + _RunsCode.marker,))


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    _RunsCode.marker = str(tmp_path / "pwned")
    p = tmp_path / "evil.pt"
    torch.save({"policy_state": _RunsCode()}, p)
    with pytest.raises(ValueError, match="refused.*could run code") as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="refused"):
        TokenPolicy.load(p)


def test_a_dataclass_config_is_refused_plain_dicts_load(tmp_path):
    from oat_edge.train.policy import PolicyConfig
    torch.save({"cfg": PolicyConfig(obs_dim=3)}, tmp_path / "dc.pt")
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(tmp_path / "dc.pt")
    save_checkpoint({"cfg": {"obs_dim": 3, "levels": (8, 5)}, "w": torch.ones(2)}, tmp_path / "ok.pt")
    ck = load_checkpoint(tmp_path / "ok.pt")
    assert ck["cfg"]["obs_dim"] == 3 and ck["w"].sum() == 2


def test_truncated_and_non_checkpoint_files_are_one_line_errors(tmp_path):
    save_checkpoint({"w": torch.ones(1000)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("hello")
    for name in ("cut.pt", "text.pt"):
        with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as e:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with open(tmp_path / "list.pt", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "list.pt")


def test_shipped_checkpoint_loads_weights_only_with_the_same_weights():
    ck = load_checkpoint(SHIPPED)
    unsafe = torch.load(SHIPPED, map_location="cpu", weights_only=False)  # our own file: trusted
    state = TokenPolicy.from_checkpoint(ck).state_dict()
    ref = TokenPolicy.from_checkpoint(unsafe).state_dict()
    assert state.keys() == ref.keys()
    for k in state:
        assert torch.equal(state[k], ref[k]), k


def test_commands_refuse_a_checkpoint_with_code_in_one_line(tmp_path, capsys):
    from oat_edge import cli
    _RunsCode.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pt"
    torch.save({"tokenizer": _RunsCode()}, evil)
    for argv in (["export", "--checkpoint", str(evil), "--out", str(tmp_path / "b")],
                 ["bench", "--checkpoint", str(evil), "--iters", "1"],
                 ["train-policy", "--demos", str(tmp_path / "d.npz"), "--tokenizer", str(evil),
                  "--out", str(tmp_path / "p")]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "refused" in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "b").exists()
