import pytest
import torch
from oat_edge.train.bin_tokenizer import BinTokenizer
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
from oat_edge.train.tokenizer import OATConfig, OATTokenizer

torch.set_num_threads(1)
OBS, T, H, D, K = 5, 2, 8, 3, 4


def tiny_policy(K=K, codebook=1000, **kw):
    torch.manual_seed(0)
    cfg = dict(obs_dim=OBS, n_obs_steps=T, codebook_size=codebook, num_tokens=K, width=16, n_layers=2, n_heads=2)
    cfg.update(kw)
    return ARPolicy(PolicyConfig(**cfg)).eval()


def tiny_oat(**kw):
    torch.manual_seed(0)
    tok = OATTokenizer(OATConfig(action_dim=D, horizon=H, num_tokens=K, enc_width=16, enc_depth=1, enc_heads=2,
                                 dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32, **kw))
    tok.set_normalizer(Normalizer.fit(torch.randn(50, H, D)))
    return tok


def tiny_token_policy(tok=None):
    tok = tok or tiny_oat()
    pol = tiny_policy(K=tok.num_tokens, codebook=tok.codebook_size)
    return TokenPolicy(tok, pol, Normalizer.fit(torch.randn(50, T, OBS) * 3))


def obs(B=3, seed=1):
    return torch.randn(B, T, OBS, generator=torch.Generator().manual_seed(seed))


def test_step_shapes_match_design_contract():
    p = tiny_policy()
    c = p.cfg
    mk, mv = p.prefill(obs())
    assert mk.shape == mv.shape == (2, 3, 2, T, 8)
    pk, pv = p.empty_cache(3)
    assert pk.shape == (2, 3, 2, K, 8)
    logits, nk, nv = p.step(torch.full((3,), c.bos_id), torch.tensor([0]), pk, pv, mk, mv)
    assert logits.shape == (3, 1001) and nk.shape == nv.shape == (2, 3, 2, 1, 8)


@torch.no_grad()
def test_kv_cache_step_loop_equals_full_forward_even_with_garbage_in_future_slots():
    p = tiny_policy()
    o, ids = obs(), torch.randint(0, 1000, (3, K))
    full = p(o, ids)
    mk, mv = p.prefill(o)
    shape = p.empty_cache(3)[0].shape
    pk, pv = torch.randn(shape) * 10, torch.randn(shape) * 10  # slots >= t must be ignored
    tok = torch.full((3,), p.cfg.bos_id)
    for t in range(K):
        logits, nk, nv = p.step(tok, torch.tensor([t]), pk, pv, mk, mv)
        assert torch.allclose(logits, full[:, t], atol=1e-5)
        pk[:, :, :, t:t + 1], pv[:, :, :, t:t + 1] = nk, nv
        tok = ids[:, t]


def test_greedy_generate_is_deterministic_argmax_over_codes():
    p = tiny_policy()
    o = obs()
    a = p.generate(o, temperature=0.0)
    assert torch.equal(a, p.generate(o, top_k=1, seed=5))
    logits = p(o, a)[..., :1000]
    assert torch.equal(logits.argmax(-1), a)


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    p = tiny_policy()
    o = obs()
    a = p.generate(o, seed=7)
    assert torch.equal(a, p.generate(o, seed=7))
    assert not torch.equal(a, p.generate(o, seed=8))
    assert a.max() < 1000 and a.min() >= 0


def test_max_tokens_gives_prefix_and_rejects_out_of_range():
    p = tiny_policy()
    o = obs()
    assert torch.equal(p.generate(o, max_tokens=2, temperature=0), p.generate(o, temperature=0)[:, :2])
    for bad in (0, K + 1):
        with pytest.raises(ValueError, match=f"max_tokens: expected an int in 1..{K}, got {bad}"):
            p.generate(o, max_tokens=bad)


def test_bad_obs_shape_and_ids_raise():
    p = tiny_policy()
    with pytest.raises(ValueError, match=r"obs_norm: expected shape \[B, 2, 5\].*got \[3, 2, 4\]"):
        p.generate(torch.zeros(3, T, OBS - 1))
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 1000\)"):
        p(obs(), torch.full((3, K), 1000))
    with pytest.raises(ValueError, match="obs_norm: expected finite"):
        p.generate(torch.full((1, T, OBS), float("nan")))


def test_loss_trains_policy_only_and_is_finite():
    tp = tiny_token_policy()
    tp.train()
    assert not tp.tokenizer.training
    ids = tp.tokenizer.tokenize(torch.randn(4, H, D))
    loss, info = tp.policy.loss(obs(4), ids)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= info["acc"] <= 1
    assert all(p.grad is None for p in tp.tokenizer.parameters())
    assert tp.policy.tok_emb.weight.grad is not None


@pytest.mark.parametrize("make_tok", [lambda: tiny_oat(), lambda: tiny_oat(nested_dropout=False),
                                      lambda: BinTokenizer(D, H, bins=16).fit(torch.randn(20, H, D))])
def test_predict_works_with_oat_oatx_and_bin(make_tok):
    tp = tiny_token_policy(make_tok())
    raw = tp.obs_normalizer.unnormalize(obs())
    a = tp.predict(raw, seed=0)
    assert a.shape == (3, H, D) and torch.isfinite(a).all()
    assert tp.predict(raw[0], seed=0).shape == (H, D)
    assert torch.equal(tp.predict(raw, seed=0), a)
    low, high = tp.tokenizer.normalizer.low, tp.tokenizer.normalizer.high
    assert (a >= low - 1e-5).all() and (a <= high + 1e-5).all()


def test_token_policy_rejects_mismatched_parts():
    with pytest.raises(ValueError, match="ar_policy.cfg: expected num_tokens=4"):
        TokenPolicy(tiny_oat(), tiny_policy(K=5), Normalizer(OBS))
    with pytest.raises(ValueError, match="obs_normalizer.dim: expected obs_dim=5, got 6"):
        TokenPolicy(tiny_oat(), tiny_policy(), Normalizer(6))
    with pytest.raises(ValueError, match=r"obs_raw: expected shape \[B, 2, 5\]"):
        tiny_token_policy().predict(torch.zeros(3, OBS))


def test_save_load_round_trip_reproduces_predictions(tmp_path):
    for tok in (tiny_oat(), BinTokenizer(D, H, bins=16).fit(torch.randn(20, H, D))):
        tp = tiny_token_policy(tok)
        tp.save(tmp_path / "p.pt")
        tp2 = TokenPolicy.load(tmp_path / "p.pt")
        raw = obs()
        assert torch.equal(tp.predict(raw, seed=3), tp2.predict(raw, seed=3))
        assert tp2.tokenizer.kind == tok.kind
