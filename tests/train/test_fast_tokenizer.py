import motions  # tests/fixtures/motions.py (on the path through tests/conftest.py)
import numpy as np
import pytest
import torch
from oat_edge.train.fast_tokenizer import FASTTokenizer, _apply_merge, _pair_counts, dct_matrix

torch.set_num_threads(1)
H, D = 16, 3


def smooth_chunks(n=300, seed=0):
    """Low-frequency random motions in [-1.5, 2.5] (not already normalized)."""
    return motions.smooth_chunks(n, H, D, seed)


@pytest.fixture(scope="module")
def fitted():
    return FASTTokenizer(D, H, scale=10.0, vocab_size=256, max_tokens=H * D).fit(smooth_chunks())


def test_dct_matrix_is_orthonormal_and_round_trips_exactly_without_rounding():
    c = dct_matrix(H)
    np.testing.assert_allclose(c @ c.T, np.eye(H), atol=1e-12)
    tok = FASTTokenizer(D, H)
    x = np.random.default_rng(1).normal(size=(5, H, D))
    np.testing.assert_allclose(tok.idct(tok.dct(x)), x, atol=1e-12)
    # DC coefficient of the orthonormal DCT-II is sqrt(H) * mean over time
    np.testing.assert_allclose(tok.dct(x)[:, 0], np.sqrt(H) * x.mean(1), atol=1e-12)


def test_symbols_are_frequency_major_low_frequencies_first(fitted):
    # a chunk constant in time has only DC coefficients: the first D symbols (frequency 0 of
    # every dim) carry it, all later symbols are the zero coefficient
    a = torch.tensor([[1.9, -0.7, 0.4]]).expand(1, H, D)
    sym = fitted._symbols(fitted.quantize(a))[0] + fitted.min_coef
    assert np.all(sym[D:] == 0)
    assert np.all(sym[:D] != 0)


def test_pair_merge_is_left_to_right_non_overlapping_and_stops_at_separators():
    a = np.array([5, 5, 5, -1, 5, 5, 5, 5, -1, 2, 5])
    np.testing.assert_array_equal(_apply_merge(a, 5, 5, 9), [9, 5, -1, 9, 9, -1, 2, 5])
    codes, counts = _pair_counts(np.array([1, 2, -1, 3, 4, -1]), 10)
    assert dict(zip(codes.tolist(), counts.tolist())) == {12: 1, 34: 1}  # no (2, 3) across sequences


def test_bpe_merges_shorten_sequences_and_round_trip_training_data_exactly(fitted):
    train = smooth_chunks()
    ids = fitted.tokenize(train)
    lengths = np.array([len(s) for s in ids])
    assert len(fitted.merges) > 0 and fitted.num_ids <= 256
    assert lengths.max() <= H * D and lengths.mean() < 0.5 * H * D
    coeffs, ok = fitted.decode_coefficients(ids)
    assert ok.all()
    np.testing.assert_array_equal(coeffs, fitted.quantize(train))  # lossless up to the rounding
    rec, ok = fitted.detokenize(ids)
    assert ok.all() and rec.shape == (len(train), H, D) and rec.dtype == np.float32
    # rounding error only: |coef error| <= 0.5/scale, in raw units scaled by 1/normalizer.scale
    assert np.abs(rec - train.numpy()).max() < 0.5


def test_dropped_token_is_undecodable_and_decodes_to_zero_coefficients(fitted):
    ids = fitted.tokenize(smooth_chunks(4, seed=3))
    broken = [s[:1] + s[2:] for s in ids]
    coeffs, ok = fitted.decode_coefficients(broken)
    assert not ok.any()
    assert np.all(coeffs == 0)
    actions, ok2 = fitted.detokenize(broken)
    assert not ok2.any()
    zero = fitted.normalizer.unnormalize(torch.zeros(H, D)).numpy()
    np.testing.assert_allclose(actions, np.broadcast_to(zero, actions.shape), atol=1e-6)
    # the intact sequences still decode
    assert fitted.decode_coefficients(ids)[1].all()


def test_unknown_ids_are_undecodable_and_eos_ends_a_sequence(fitted):
    s = fitted.tokenize(smooth_chunks(1, seed=4))[0]
    _, ok = fitted.decode_coefficients([s + [fitted.eos_id, 3, 7], s[:-1] + [fitted.num_ids],
                                        s[:-1] + [-1], [fitted.eos_id], []])
    assert ok.tolist() == [True, False, False, False, False]
    with_eos = fitted.tokenize(smooth_chunks(1, seed=4), add_eos=True)[0]
    assert with_eos == s + [fitted.eos_id]


def test_sequences_longer_than_max_tokens_are_cut_and_become_undecodable():
    train = smooth_chunks()
    tok = FASTTokenizer(D, H, vocab_size=256, max_tokens=6).fit(train)
    full = tok.tokenize_full(train)
    cut = tok.tokenize(train)
    assert max(len(s) for s in cut) <= 6
    long = np.array([len(s) > 6 for s in full])
    assert long.any() and (~long).any()
    _, ok = tok.decode_coefficients(cut)
    np.testing.assert_array_equal(ok, ~long)


def test_checkpoint_round_trip_gives_identical_tokens_and_decodes(fitted, tmp_path):
    fitted.save(tmp_path / "fast.pt")
    other = FASTTokenizer.load(tmp_path / "fast.pt")
    x = smooth_chunks(20, seed=5)
    ids = fitted.tokenize(x)
    assert other.tokenize(x) == ids
    np.testing.assert_array_equal(other.detokenize(ids)[0], fitted.detokenize(ids)[0])


def test_fit_rejects_a_vocab_smaller_than_the_coefficient_alphabet():
    with pytest.raises(ValueError, match="vocab_size"):
        FASTTokenizer(D, H, scale=100.0, vocab_size=16).fit(smooth_chunks(50))


def test_unfitted_tokenizer_refuses_to_tokenize():
    with pytest.raises(RuntimeError, match="fit"):
        FASTTokenizer(D, H).tokenize(smooth_chunks(1))
