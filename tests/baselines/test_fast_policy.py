import numpy as np
import torch
from oat_edge.baselines.fast_policy import FASTPolicy, fast_targets, generate_until_end, masked_loss

from .conftest import smooth_chunks


def test_targets_end_with_the_end_token_and_only_tokens_plus_one_end_carry_loss(fast_policy):
    tok = fast_policy.tokenizer
    a = smooth_chunks(30, seed=1)
    ids, mask, cut = fast_targets(tok, a)
    assert ids.shape == mask.shape == (30, tok.max_tokens + 1) and cut == 0
    for row, m, seq in zip(ids.tolist(), mask.tolist(), tok.tokenize_full(a)):
        n = len(seq)
        assert row[:n] == seq and row[n:] == [tok.eos_id] * (len(row) - n)
        assert m == [True] * (n + 1) + [False] * (len(row) - n - 1)


def test_sequences_longer_than_max_tokens_are_cut_and_counted(fast_policy):
    from oat_edge.train.fast_tokenizer import FASTTokenizer
    short = FASTTokenizer.from_checkpoint(dict(fast_policy.tokenizer.checkpoint(),
                                               config=dict(fast_policy.tokenizer.checkpoint()["config"], max_tokens=3)))
    ids, mask, cut = fast_targets(short, smooth_chunks(30, seed=1))
    assert cut > 0 and ids.shape[1] == 4 and mask.all()


def test_padding_after_the_end_token_does_not_change_the_loss(fast_policy):
    pol = fast_policy.policy.eval()
    ids, mask, _ = fast_targets(fast_policy.tokenizer, smooth_chunks(8, seed=2))
    obs = torch.randn(8, 2, 5)
    loss, _ = masked_loss(pol, obs, ids, mask)
    # changing the (masked) targets after the end changes the inputs only after the end too: with
    # causal attention the masked positions cannot influence the positions that carry loss
    other = ids.clone()
    other[~mask] = 0
    loss2, _ = masked_loss(pol, obs, other, mask)
    torch.testing.assert_close(loss, loss2)


def test_generation_stops_at_the_end_token_and_pads_ended_rows(fast_policy):
    pol, eos = fast_policy.policy, fast_policy.tokenizer.eos_id
    ids = generate_until_end(pol, torch.randn(6, 2, 5), eos, temperature=1.0, top_k=0, seed=3)
    assert ids.shape[1] <= pol.cfg.num_tokens
    for row in ids.tolist():
        if eos in row:
            i = row.index(eos)
            assert row[i:] == [eos] * (len(row) - i)
    if ids.shape[1] < pol.cfg.num_tokens:
        assert (ids == eos).any(1).all()  # it stopped early only because every row ended


def test_checkpoint_round_trip_gives_the_same_policy(fast_policy):
    again = FASTPolicy.from_checkpoint(fast_policy.checkpoint())
    obs = np.random.default_rng(0).normal(size=(2, 2, 5)).astype(np.float32)
    a1, ok1, n1 = fast_policy.predict(obs, seed=11)
    a2, ok2, n2 = again.predict(obs, seed=11)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(ok1, ok2)
    np.testing.assert_array_equal(n1, n2)
