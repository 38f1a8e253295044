import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from oat_edge.train import distributed as D
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.tokenizer import OATConfig, OATTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_TOK = ["--width", "16", "--enc-depth", "1", "--dec-depth", "1", "--heads", "2",
            "--horizon", "8", "--batch", "8", "--warmup", "1", "--log-every", "1",
            "--eval-every", "2", "--no-progress", "--threads", "1"]


def _tiny_tok(seed=0, **kw):
    torch.manual_seed(seed)
    tok = OATTokenizer(OATConfig(horizon=8, enc_width=16, enc_depth=1, enc_heads=2,
                                 dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32, **kw))
    tok.set_normalizer(Normalizer.fit(torch.rand(64, 4) * 2 - 1))
    return tok


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_lr_schedule_warms_up_linearly_then_decays_to_min_ratio():
    cfg = D.TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert D.lr_at(0, cfg) == pytest.approx(0.1) and D.lr_at(9, cfg) == pytest.approx(1.0)
    assert D.lr_at(10, cfg) == pytest.approx(1.0)
    assert D.lr_at(100, cfg) == pytest.approx(0.1)
    assert D.lr_at(55, cfg) == pytest.approx(0.55)
    assert D.lr_at(50, D.TrainConfig(steps=100, lr=1.0, warmup=10, schedule="constant")) == 1.0


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    tok = _tiny_tok(nested_dropout=False, dropout=0.0)  # deterministic loss: only learning moves it
    t = torch.linspace(0, 1, 8)[None, :, None]
    batch = torch.sin(3 * t * torch.randn(16, 1, 4) + torch.randn(16, 1, 4))  # smooth chunks
    cfg = D.TrainConfig(steps=80, batch=16, lr=1e-2, warmup=1, schedule="constant",
                        log_every=1, eval_every=100, ckpt_every=100, progress=False)
    D.fit(tok, lambda m, idx: m.loss(batch)[:1] + ({},), 16, cfg, str(tmp_path), D.Dist())
    losses = [json.loads(l)["loss"] for l in open(tmp_path / "metrics.jsonl")]
    assert len(losses) == 80
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])


def test_resume_continues_from_the_saved_step_drops_a_torn_log_line_and_matches_an_uninterrupted_run(tmp_path):
    data = torch.tanh(torch.randn(32, 8, 4))

    def loss_fn(m, idx):
        loss, _ = m.loss(data[idx])
        return loss, {}

    def cfg(steps):
        return D.TrainConfig(steps=steps, batch=8, lr=1e-3, warmup=2, schedule="constant",
                             log_every=1, eval_every=100, ckpt_every=3, progress=False)

    full = _tiny_tok()
    D.fit(full, loss_fn, 32, cfg(8), str(tmp_path / "a"), D.Dist())
    part = _tiny_tok()
    D.fit(part, loss_fn, 32, cfg(6), str(tmp_path / "b"), D.Dist())
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)["step"] == 6
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # a crash while writing step 7's line
        f.write('{"step": 7, "loss": 0.1')
    resumed = _tiny_tok(seed=123)  # different init: everything must come from the checkpoint
    ema = D.fit(resumed, loss_fn, 32, cfg(8), str(tmp_path / "b"), D.Dist(), resume=True)
    steps = [json.loads(l)["step"] for l in open(tmp_path / "b" / "metrics.jsonl")]
    assert steps == list(range(1, 9))
    assert ema.step == 8
    for p, q in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt.pt"):
        D.fit(_tiny_tok(), lambda m, i: (m.loss(torch.zeros(2, 8, 4))[0], {}), 4,
              D.TrainConfig(steps=1, batch=2, progress=False), str(tmp_path), D.Dist(),
              resume=True)


def test_empty_training_set_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty dataset"):
        D.fit(_tiny_tok(), None, 0, D.TrainConfig(steps=1, progress=False), str(tmp_path),
              D.Dist())


def test_tokenizer_then_policy_cli_produce_a_loadable_token_policy(tmp_path, write_demos):
    from oat_edge.train import train_policy, train_tokenizer
    from oat_edge.train.policy import TokenPolicy

    demos = write_demos(tmp_path / "demos.npz")
    train_tokenizer.main(["--demos", str(demos), "--out", str(tmp_path / "tok"),
                          "--steps", "4", *TINY_TOK])
    tok = train_tokenizer.load_tokenizer(str(tmp_path / "tok" / "tokenizer.pt"))
    # the tokenizer's normalizer was fitted on the data, not left at identity
    assert not torch.equal(tok.normalizer.scale, torch.ones(4))
    train_policy.main(["--demos", str(demos), "--tokenizer", str(tmp_path / "tok/tokenizer.pt"),
                       "--out", str(tmp_path / "pol"), "--steps", "4", "--width", "16",
                       "--layers", "1", "--heads", "2", "--batch", "8", "--warmup", "1",
                       "--log-every", "1", "--eval-every", "2", "--no-progress"])
    pol = TokenPolicy.load(str(tmp_path / "pol" / "policy.pt"))
    ck = torch.load(tmp_path / "pol" / "policy.pt", weights_only=False)
    assert ck["tasks"] == ["reach-v3", "push-v3"]
    obs = np.zeros((2, 39 + 2), np.float32)
    assert pol.predict(obs, max_tokens=2, seed=0).shape == (8, 4)
    rec = [json.loads(l) for l in open(tmp_path / "pol" / "metrics.jsonl")]
    assert rec[-1]["step"] == 4 and "val_loss" in rec[-1] and "lr" in rec[-1]


def test_bin_variant_needs_no_training_and_trains_a_128_token_policy(tmp_path, write_demos):
    from oat_edge.train import train_policy, train_tokenizer

    demos = write_demos(tmp_path / "demos.npz")
    train_tokenizer.main(["--demos", str(demos), "--out", str(tmp_path / "bin"),
                          "--variant", "bin", "--horizon", "8", "--no-progress"])
    tok = train_tokenizer.load_tokenizer(str(tmp_path / "bin" / "tokenizer.pt"))
    assert tok.num_tokens == 8 * 4 and tok.codebook_size == 256
    train_policy.main(["--demos", str(demos), "--tokenizer", str(tmp_path / "bin/tokenizer.pt"),
                       "--out", str(tmp_path / "pol"), "--steps", "2", "--width", "16",
                       "--layers", "1", "--heads", "2", "--batch", "8", "--no-progress"])
    assert os.path.exists(tmp_path / "pol" / "policy.pt")


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun not installed next to this python")
def test_two_process_torchrun_cpu_training_runs_and_rank0_writes(tmp_path, write_demos):
    demos = write_demos(tmp_path / "demos.npz")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), OMP_NUM_THREADS="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", "2",
           "--master_port", "29561", "-m", "oat_edge.train.train_tokenizer",
           "--demos", str(demos), "--out", str(tmp_path / "tok"), "--steps", "4", *TINY_TOK]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = [json.loads(l) for l in open(tmp_path / "tok" / "metrics.jsonl")]
    assert [x["step"] for x in rec] == [1, 2, 3, 4]
    assert torch.load(tmp_path / "tok" / "ckpt.pt", weights_only=False)["step"] == 4
    assert "world size 2, ranks in sync" in r.stdout


def test_training_into_a_finished_run_is_refused_without_force(tmp_path, capsys, monkeypatch,
                                                               write_demos):
    from oat_edge import cli
    demos = write_demos(tmp_path / "demos.npz")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.pt").write_bytes(b"an earlier run")
    argv = ["train-tokenizer", "--demos", str(demos), "--out", str(tmp_path / "tok"),
            "--steps", "2", "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "Traceback" not in err
    assert (tmp_path / "tok" / "tokenizer.pt").read_bytes() == b"an earlier run"
    from oat_edge.train import train_tokenizer

    def failing_fit(*a, **k):
        raise FloatingPointError("loss: expected a finite value")
    with monkeypatch.context() as m:  # a forced run that fails leaves no old result behind
        m.setattr(train_tokenizer.D, "fit", failing_fit)
        with pytest.raises(FloatingPointError):
            train_tokenizer.main(argv[1:] + ["--force"])
    assert not (tmp_path / "tok" / "tokenizer.pt").exists()
    assert cli.main(argv + ["--force", "--threads", "1"]) == 0
    assert (tmp_path / "tok" / "tokenizer.pt").read_bytes() != b"an earlier run"
