import math

import numpy as np
import pytest
from oat_edge.errors import InputError
from oat_edge.sampling import SplitMix64, sample_batch, sample_token


def test_splitmix64_first_outputs_match_reference_values():
    # published splitmix64 outputs (Vigna's reference implementation)
    r = SplitMix64(0)
    assert [r.next_u64() for _ in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    r = SplitMix64(1234567)
    assert [r.next_u64() for _ in range(3)] == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_uniform_uses_top_53_bits():
    assert SplitMix64(0).uniform() == (0xE220A8397B1DCDAF >> 11) * 2.0 ** -53


def test_seed_wraps_to_uint64():
    a, b = SplitMix64(-1), SplitMix64(2 ** 64 - 1)
    assert a.next_u64() == b.next_u64()


def test_hand_computed_draw_picks_second_candidate():
    # logits [0, ln 3]: candidates (1, w=1), (0, w=1/3); r = u * 4/3 with u(seed 0) = 0.8833 -> r > 1 -> id 0
    logits = np.array([0.0, math.log(3.0), 5.0], np.float32)  # index 2 = BOS, never sampled
    assert sample_token(logits, 2, 1.0, 0, SplitMix64(0)) == 0
    # seed 1234567: u = 0.350 -> r = 0.467 < 1 -> id 1
    assert SplitMix64(1234567).uniform() < 0.75
    assert sample_token(logits, 2, 1.0, 0, SplitMix64(1234567)) == 1


def test_greedy_takes_lowest_id_on_ties_and_draws_nothing():
    rng = SplitMix64(7)
    logits = np.array([1.0, 3.0, 3.0, 0.0, 9.0], np.float32)
    assert sample_token(logits, 4, 0.0, 10, rng) == 1
    assert sample_token(logits, 4, 1.0, 1, rng) == 1
    assert rng.state == SplitMix64(7).state


def test_bos_is_never_sampled():
    logits = np.zeros(11, np.float32)
    logits[10] = 100.0  # BOS dominates
    rng = SplitMix64(3)
    got = {sample_token(logits, 10, 1.0, 0, rng) for _ in range(200)}
    assert 10 not in got and len(got) > 5


def test_top_k_restricts_candidates_with_ties_by_lower_id():
    logits = np.array([5.0, 1.0, 5.0, 5.0, 4.0, 0.0], np.float32)
    rng = SplitMix64(11)
    got = {sample_token(logits, 6, 10.0, 2, rng) for _ in range(300)}
    assert got == {0, 2}


def test_sample_batch_draws_rows_in_order_from_one_rng():
    g = np.random.default_rng(0)
    logits = g.normal(size=(4, 9)).astype(np.float32)
    a = sample_batch(logits, 8, 1.0, 5, SplitMix64(42))
    r = SplitMix64(42)
    b = [sample_token(logits[i], 8, 1.0, 5, r) for i in range(4)]
    assert a.dtype == np.int64 and a.tolist() == b


@pytest.mark.parametrize("kw,field", [({"temperature": -1.0}, "temperature"), ({"top_k": -2}, "top_k"),
                                      ({"codebook_size": 0}, "codebook_size")])
def test_bad_parameters_raise_naming_field(kw, field):
    args = dict(codebook_size=3, temperature=1.0, top_k=2, rng=SplitMix64(0))
    args.update(kw)
    with pytest.raises(InputError, match=f"{field}.*expected.*got"):
        sample_token(np.zeros(4, np.float32), **args)


def test_nan_logits_raise():
    with pytest.raises(ValueError, match="logits"):
        sample_token(np.array([0.0, np.nan], np.float32), 2, 1.0, 0, SplitMix64(0))
