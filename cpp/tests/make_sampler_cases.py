"""Writes cpp/tests/data/sampler_cases.txt from the Python reference sampler (python/oat_edge/sampling.py).

test_sampler_parity.cpp replays every case through the C++ sampler and expects identical ids, so
the two implementations of DESIGN.md §7 are pinned to each other. Logit rows are generated from
integers (exact in both languages): logit[i] = float32(((i * p + q) % m) / d - 3), ties included.
Run: .venv/bin/python cpp/tests/make_sampler_cases.py
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
from oat_edge.sampling import SplitMix64, sample_token  # noqa: E402

CODEBOOK, VOCAB, DRAWS = 1000, 1001, 16


def row(p, q, m, d):
    i = np.arange(VOCAB, dtype=np.int64)
    return (((i * p + q) % m) / d - 3.0).astype(np.float32)


def main():
    lines = ["# p q m d seed temperature top_k : ids (one RNG, DRAWS draws from the same row)"]
    cases = []
    cases = [(7, 3, 1000, 100.0), (13, 5, 97, 10.0), (1, 0, 10, 1.0), (31, 17, 1000, 37.0), (3, 1, 1000, 1000.0)]
    for p, q, m, d in cases:
        for seed in (0, 1, 1234567, 2**63 + 11):
            for temperature, top_k in [(1.0, 10), (0.7, 0), (2.5, 50), (0.0, 10), (1.0, 1), (1.3, 1000), (0.05, 3)]:
                cases.append((p, q, m, d, seed, temperature, top_k))
    for p, q, m, d, seed, t, k in cases:
        l = row(p, q, m, d)
        rng = SplitMix64(seed)
        ids = [sample_token(l, CODEBOOK, t, k, rng) for _ in range(DRAWS)]
        lines.append(f"{p} {q} {m} {d!r} {seed} {t!r} {k} : " + " ".join(map(str, ids)))
    out = os.path.join(HERE, "data", "sampler_cases.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
