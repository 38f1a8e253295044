import pytest
import torch
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.tokenizer import OATConfig, OATTokenizer, register_mask

torch.set_num_threads(1)
H, D, K = 8, 3, 4


def tiny(**kw):
    cfg = dict(action_dim=D, horizon=H, num_tokens=K, enc_width=16, enc_depth=2, enc_heads=2,
               dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32)
    cfg.update(kw)
    torch.manual_seed(0)
    tok = OATTokenizer(OATConfig(**cfg))
    tok.set_normalizer(Normalizer.fit(torch.randn(200, H, D) * 2 + 1))
    return tok


def randomize(tok, std=0.5):
    # non-trivial weights (zero-init heads would hide every bug behind constant outputs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in tok.named_parameters():
            if not name.startswith("normalizer"):
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return tok.eval()


def register_latents(tok, delta_slot=None):
    enc = tok.encoder
    if delta_slot is not None:
        with torch.no_grad():
            # random direction: a constant shift would be erased by the pre-norm LayerNorms
            enc.registers[delta_slot] += torch.randn(enc.registers.shape[1], generator=torch.Generator().manual_seed(9))
    return enc(torch.randn(2, H, D, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("causal", [True, False])
def test_later_registers_cannot_change_earlier_tokens(causal):
    tok = randomize(tiny(causal_registers=causal))
    base = register_latents(tok)
    pert = register_latents(tok, delta_slot=2)
    earlier_same = torch.allclose(base[:, :2], pert[:, :2], atol=1e-6)
    assert not torch.allclose(base[:, 2:], pert[:, 2:])
    # with the causal mask earlier slots are untouched; without it they move (the test can fail)
    assert earlier_same == causal


def test_register_mask_blocks_actions_to_registers():
    m = register_mask(3, 2, True)
    allowed = (m == 0)
    assert allowed[:3, :3].all() and not allowed[:3, 3:].any()
    assert allowed[3:, :3].all()
    assert allowed[3:, 3:].tolist() == [[True, False], [True, True]]


def test_nested_dropout_overwrites_exactly_slots_from_keep_k_with_mask_vector():
    tok = randomize(tiny())
    codes = tok.fsq.ids_to_codes(torch.randint(0, 1000, (K, K)))
    keep = torch.arange(1, K + 1)
    mem = tok.decoder.memory(codes, keep)
    for b in range(K):
        for s in range(K):
            is_mask = torch.equal(mem[b, s], tok.decoder.mask_token)
            assert is_mask == (s >= keep[b])


def test_training_keep_k_is_pow2_and_oatx_keeps_all():
    tok = tiny(keep_k="pow2")
    assert set(tok.sample_keep_k(500).tolist()) == {1, 2, 4}
    tok.train()
    _, info = tok.loss(torch.randn(64, H, D))
    assert info["keep_k_mean"] < K
    tokx = tiny(nested_dropout=False).train()
    _, info = tokx.loss(torch.randn(8, H, D))
    assert info["keep_k_mean"] == K
    assert tok.kind == "oat" and tokx.kind == "oatx" and tiny(causal_registers=False).kind == "oat_nocausal"


def test_loss_backpropagates_through_fsq_into_encoder():
    tok = tiny().train()
    with torch.no_grad():  # both heads start at zero; after one step the decoder head is non-zero
        tok.decoder.head.weight.normal_()
    loss, _ = tok.loss(torch.randn(4, H, D))
    loss.backward()
    assert tok.encoder.head.weight.grad.abs().sum() > 0
    assert tok.decoder.head.weight.grad.abs().sum() > 0


def test_every_id_sequence_and_prefix_decodes_within_action_range():
    tok = randomize(tiny(), std=1.0)
    low, high = tok.normalizer.low, tok.normalizer.high
    seqs = torch.cat([torch.randint(0, 1000, (16, K)), torch.zeros(1, K, dtype=torch.long),
                      torch.full((1, K), 999)])
    for k in range(1, K + 1):
        a = tok.detokenize(seqs[:, :k])
        assert torch.isfinite(a).all()
        assert (a >= low - 1e-5).all() and (a <= high + 1e-5).all()
        assert torch.equal(a, tok.detokenize(seqs, k))


def test_decode_of_prefix_ignores_later_ids():
    tok = randomize(tiny())
    a = torch.randint(0, 1000, (3, K))
    b = a.clone()
    b[:, 2:] = torch.randint(0, 1000, (3, K - 2))
    assert torch.equal(tok.detokenize(a, 2), tok.detokenize(b, 2))


@pytest.mark.parametrize("call,match", [
    (lambda t: t.tokenize(torch.zeros(2, H, D + 1)), r"actions_raw: expected shape \[B, 8, 3\].*got \[2, 8, 4\]"),
    (lambda t: t.tokenize(torch.full((2, H, D), float("nan"))), "actions_raw: expected finite.*got NaN"),
    (lambda t: t.detokenize(torch.zeros(1, K, dtype=torch.long), 0), "k: expected an int in 1..4, got 0"),
    (lambda t: t.detokenize(torch.zeros(1, K, dtype=torch.long), K + 1), "k: expected an int in 1..4, got 5"),
    (lambda t: t.detokenize(torch.tensor([[0, 1000]])), r"ids: expected values in \[0, 1000\).*max 1000"),
    (lambda t: t.detokenize(torch.tensor([[-1, 3]])), r"ids: expected values in \[0, 1000\).*min -1"),
    (lambda t: t.detokenize(torch.zeros(1, K + 1, dtype=torch.long), 2), "ids: expected at most 4"),
    (lambda t: t.detokenize(torch.zeros(1, 2)), "ids: expected an integer array"),
])
def test_bad_inputs_raise_with_field_expected_given(call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny())


def test_save_load_round_trip_keeps_weights_and_normalizer(tmp_path):
    tok = randomize(tiny())
    tok.save(tmp_path / "t.pt")
    tok2 = OATTokenizer.load(tmp_path / "t.pt").eval()
    x = torch.randn(3, H, D)
    assert torch.equal(tok.tokenize(x), tok2.tokenize(x))
    assert torch.equal(tok2.normalizer.scale, tok.normalizer.scale)
    ids = torch.randint(0, 1000, (3, K))
    assert torch.equal(tok.detokenize(ids), tok2.detokenize(ids))


def test_set_normalizer_copies_instead_of_aliasing():
    tok = tiny()
    n = Normalizer.fit(torch.randn(10, D))
    tok.set_normalizer(n)
    n.scale.fill_(7.0)
    assert not torch.equal(tok.normalizer.scale, n.scale)
    with pytest.raises(ValueError, match="normalizer.dim: expected action_dim=3, got 2"):
        tok.set_normalizer(Normalizer(2))


def test_paper_preset_matches_reference_parameter_counts():
    from oat_edge.train.presets import PRESETS
    tok = OATTokenizer(OATConfig(**PRESETS["paper"]["OATConfig"]))
    n_enc = sum(p.numel() for p in tok.encoder.parameters())
    n_dec = sum(p.numel() for p in tok.decoder.parameters())
    assert 1.5e6 < n_enc < 1.7e6 and 4.1e6 < n_dec < 4.3e6  # the paper: ~1.6 M / ~4.2 M


def test_uniform_full_keep_k_trains_every_prefix_and_full_k_a_quarter_of_the_time():
    torch.manual_seed(0)
    k = tiny(keep_k="uniform-full").sample_keep_k(20000)
    counts = torch.bincount(k, minlength=K + 1)[1:].float() / len(k)
    assert torch.allclose(counts[:-1], torch.full((K - 1,), 0.75 / (K - 1)), atol=0.015)  # every k trained
    assert abs(float(counts[-1]) - 0.25) < 0.015
    with pytest.raises(ValueError, match="keep_k"):
        tiny(keep_k="zipf")
