import json

import numpy as np
import pytest
import torch
from oat_edge.measure.decodability import (
    EDITS,
    fast_check,
    main,
    measure,
    near_miss_sequences,
    oat_check,
    prefix_sequences,
)
from oat_edge.train.demos import Demos
from oat_edge.train.fast_tokenizer import FASTTokenizer
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.tokenizer import OATConfig, OATTokenizer

torch.set_num_threads(1)
H, D, K = 8, 3, 4


def smooth_chunks(n=200, seed=0):
    rng = np.random.default_rng(seed)
    t = (np.arange(H) + 0.5) / H
    amp = rng.normal(size=(n, 2, D)) * np.array([0.6, 0.2])[None, :, None]
    a = sum(amp[:, k, None, :] * np.cos(np.pi * k * t[None, :, None] + 0.3) for k in range(2))
    return torch.tensor(np.clip(a, -1, 1), dtype=torch.float32)


def tiny_oat():
    torch.manual_seed(0)
    tok = OATTokenizer(OATConfig(action_dim=D, horizon=H, num_tokens=K, enc_width=16, enc_depth=1,
                                 enc_heads=2, dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32))
    tok.set_normalizer(Normalizer.fit(torch.randn(200, H, D) * 2 + 1))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # large random weights: the decoder output is far outside [-1, 1]
        for p in tok.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 2.0)
    return tok.eval()


def test_near_miss_sequences_differ_from_a_real_one_by_exactly_one_edit():
    rng = np.random.default_rng(0)
    real = [[1, 2, 3, 4, 5], [6, 7, 8]]
    seqs, kinds = near_miss_sequences(rng, real, 300, vocab=50, max_len=10)
    assert set(kinds) == set(EDITS)
    for s, k in zip(seqs, kinds):
        cands = [r for r in real if len(r) == len(s) + {"replace": 0, "drop": 1, "insert": -1}[k]]
        if k == "replace":
            assert any(sum(a != b for a, b in zip(s, r)) <= 1 for r in cands)
        elif k == "drop":
            assert any(any(r[:i] + r[i + 1:] == s for i in range(len(r))) for r in cands)
        else:
            assert any(any(s[:i] + s[i + 1:] == r for i in range(len(s))) for r in cands)
    # insertion into a sequence already at max_len keeps max_len tokens
    seqs, kinds = near_miss_sequences(rng, [[1, 2, 3, 4]], 30, vocab=50, max_len=4)
    assert all(len(s) == (3 if k == "drop" else 4) for s, k in zip(seqs, kinds))
    assert prefix_sequences([[1, 2, 3]]) == [[1], [1, 2], [1, 2, 3]]


def test_oat_measures_zero_undecodable_on_adversarial_sequences():
    tok = tiny_oat()
    real = tok.tokenize(torch.randn(20, H, D) * 2 + 1).tolist()
    res = measure(oat_check(tok), real, tok.codebook_size, K, 300, np.random.default_rng(0))
    for fam in ("random", "near_miss", "prefix"):
        assert res[fam]["n"] > 0
        assert res[fam]["undecodable"] == 0.0, fam
    # the raw decoder output does leave [-1, 1] (the runtime clamp is what keeps it valid)
    assert res["random"]["decodable_out_of_range"] > 0


def test_oat_check_flags_non_finite_and_out_of_bounds_outputs():
    tok = tiny_oat()
    real_detok = tok.detokenize

    def broken(ids):
        a = real_detok(ids).clone()
        a[ids[:, 0] == 0] = float("nan")
        a[ids[:, 0] == 1] = tok.normalizer.high + 1.0
        return a

    tok.detokenize = broken
    ok, _ = oat_check(tok)([[0, 5], [1, 5], [2, 5], [3], [4, 4, 4, 4], [0, 1, 2, 3, 4]])
    # the last one is too long for K=4: detokenize raises -> undecodable
    assert ok.tolist() == [False, False, True, True, True, False]


def test_fast_has_undecodable_near_miss_and_prefix_sequences():
    tok = FASTTokenizer(D, H, vocab_size=128, max_tokens=H * D).fit(smooth_chunks())
    real = tok.tokenize(smooth_chunks(50, seed=1))
    assert all(tok.decode_coefficients(real)[1])
    res = measure(fast_check(tok), real, tok.num_ids, tok.max_tokens, 300, np.random.default_rng(0))
    nm = res["near_miss"]
    assert nm["undecodable"] > 0.5
    # a dropped or inserted token always changes the expanded length
    assert nm["by_edit"]["drop"] == 1.0 and nm["by_edit"]["insert"] == 1.0
    assert 0 < res["random"]["undecodable"] <= 1.0
    # every proper prefix is undecodable, every full tokenization decodes
    n_prefix = sum(len(s) for s in real)
    assert res["prefix"]["n"] == n_prefix
    assert res["prefix"]["undecodable"] == pytest.approx((n_prefix - len(real)) / n_prefix)
    assert res["prefix"]["full_length_undecodable"] == 0.0


def test_cli_writes_json_with_both_tokenizers(tmp_path):
    rng = np.random.default_rng(0)
    n_ep, T = 12, 20
    acts = np.concatenate([smooth_chunks(1, seed=i)[0].repeat(3, 1)[:T].numpy() for i in range(n_ep)])
    demos = Demos(obs=rng.normal(size=(n_ep * T, 39)).astype(np.float32), actions=acts.astype(np.float32),
                  episode_ends=np.arange(1, n_ep + 1) * T, episode_task=np.arange(n_ep) % 2,
                  task_names=["a", "b"], meta={})
    import oat_edge.measure.decodability as dec
    tiny_oat().save(tmp_path / "oat.pt")
    orig = dec.run_experiment
    out = tmp_path / "d.json"
    try:  # the CLI takes a path; hand the in-memory demos through
        dec.run_experiment = lambda _d, *a, **k: orig(demos, *a, **k)
        main(["--demos", "unused.npz", "--oat", str(tmp_path / "oat.pt"), "--samples", "60",
              "--prefix-chunks", "10", "--vocab-size", "128", "--max-tokens", "24", "--out", str(out)])
    finally:
        dec.run_experiment = orig
    res = json.loads(out.read_text())
    assert res["oat"]["num_tokens"] == K
    for fam in ("random", "near_miss", "prefix"):
        assert res["oat"]["undecodable"][fam]["undecodable"] == 0.0
    assert res["fast"]["undecodable"]["near_miss"]["undecodable"] > 0
    assert res["fast"]["heldout"]["decodable"] == 1.0 and 0 < res["fast"]["heldout"]["mse_normalized"] < 0.1
