import pytest
import torch
from oat_edge.train.bin_tokenizer import BinTokenizer

torch.set_num_threads(1)
H, D = 4, 2


def fitted():
    torch.manual_seed(0)
    return BinTokenizer(D, H, bins=16).fit(torch.randn(100, H, D) * 3)


def test_token_count_and_time_major_order():
    tok = fitted()
    assert tok.num_tokens == H * D and tok.codebook_size == 16 and tok.kind == "bin"
    a = torch.zeros(1, H, D)
    a[0, 2, 1] = 100.0  # clamps to the top bin at t=2, d=1
    ids = tok.tokenize(a)
    assert ids.shape == (1, H * D) and ids[0, 2 * D + 1] == 15


def test_round_trip_within_half_a_bin():
    tok = fitted()
    x = tok.normalizer.unnormalize(torch.rand(5, H, D) * 2 - 1)
    err = (tok.detokenize(tok.tokenize(x)) - x).abs()
    half_bin = 1.0 / 16 / tok.normalizer.scale
    assert (err <= half_bin + 1e-5).all()


def test_every_prefix_decodes_within_range():
    tok = fitted()
    ids = torch.cat([torch.randint(0, 16, (5, H * D)), torch.zeros(1, H * D, dtype=torch.long),
                     torch.full((1, H * D), 15)])
    for k in range(1, H * D + 1):
        a = tok.detokenize(ids[:, :k])
        assert torch.isfinite(a).all()
        assert (a >= tok.normalizer.low - 1e-5).all() and (a <= tok.normalizer.high + 1e-5).all()


def test_bad_inputs_raise():
    tok = fitted()
    with pytest.raises(ValueError, match=r"actions_raw: expected shape \[B, 4, 2\]"):
        tok.tokenize(torch.zeros(1, H, 3))
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 16\)"):
        tok.detokenize(torch.full((1, 3), 16))
    with pytest.raises(ValueError, match="k: expected an int in 1..8, got 9"):
        tok.detokenize(torch.zeros(1, 8, dtype=torch.long), 9)
    with pytest.raises(ValueError, match="BinTokenizer.bins"):
        BinTokenizer(D, H, bins=1)


def test_save_load_round_trip(tmp_path):
    tok = fitted()
    tok.save(tmp_path / "b.pt")
    tok2 = BinTokenizer.load(tmp_path / "b.pt")
    assert torch.equal(tok2.normalizer.offset, tok.normalizer.offset)
    assert not list(tok2.parameters())
