"""Reference token sampler + RNG (DESIGN.md §7). numpy only, no torch.

The C++ runtime (cpp/src/sampler.cpp) mirrors this file bit for bit, so that a seeded
Python generate and a seeded C++ act produce the same tokens.
"""
import math

import numpy as np

from .errors import InputError

_MASK64 = (1 << 64) - 1


class SplitMix64:
    """splitmix64 with explicit uint64 wrap-around (Python ints, masked)."""

    def __init__(self, seed=0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InputError(f"seed: expected an int, got {type(seed).__name__}")
        self.state = int(seed) & _MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def uniform(self):
        # 53 high bits -> double in [0, 1)
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))


def _check_params(codebook_size, temperature, top_k, vocab):
    if not (1 <= int(codebook_size) <= vocab):
        raise InputError(f"codebook_size: expected 1..{vocab} (logits width), got {codebook_size}")
    if not np.isfinite(temperature) or temperature < 0:
        raise InputError(f"temperature: expected a finite value >= 0, got {temperature}")
    if int(top_k) < 0:
        raise InputError(f"top_k: expected >= 0 (0 = all), got {top_k}")


def sample_token(logits_row, codebook_size, temperature=1.0, top_k=10, rng=None):
    """Sample one token id from `logits_row[0:codebook_size]` (BOS and beyond never sampled).

    Greedy (no RNG draw) when temperature == 0 or top_k == 1: argmax, lowest id on ties.
    """
    row = np.asarray(logits_row, dtype=np.float32).reshape(-1)
    _check_params(codebook_size, temperature, top_k, row.shape[0])
    l = row[: int(codebook_size)].astype(np.float64)
    if not np.all(np.isfinite(l)):
        raise InputError("logits: expected finite values, got NaN/Inf")
    if temperature == 0 or int(top_k) == 1:
        return int(np.argmax(l))  # np.argmax returns the first (lowest) index on ties
    if rng is None:
        raise InputError("rng: expected a SplitMix64 for temperature > 0 and top_k != 1, got None")
    # stable sort on -l: descending logit, ties broken by lower id
    order = np.argsort(-l, kind="stable")
    k = int(top_k)
    if k > 0:
        order = order[:k]
    cand = l[order]
    # Weights via libm's exp and summed sequentially in candidate order, exactly as the C++
    # sampler does (np.exp / np.sum may differ in the last bit: SIMD exp, pairwise sums).
    lmax, t = float(cand[0]), float(temperature)
    w = [math.exp((float(c) - lmax) / t) for c in cand]
    total = 0.0
    for wi in w:
        total += wi
    r = rng.uniform() * total
    acc = 0.0
    for i, wi in enumerate(w):
        acc += wi
        if acc > r:
            return int(order[i])
    return int(order[-1])


def sample_batch(logits, codebook_size, temperature=1.0, top_k=10, rng=None):
    """Rows b = 0..B-1 draw in order from the same RNG. logits [B, vocab] -> int64 [B]."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 2:
        raise InputError(f"logits: expected shape [B, vocab], got {list(logits.shape)}")
    return np.array([sample_token(logits[b], codebook_size, temperature, top_k, rng)
                     for b in range(logits.shape[0])], dtype=np.int64)
