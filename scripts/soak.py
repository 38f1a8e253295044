#!/usr/bin/env python3
"""Soak test: many `Policy.act` calls at batch 1, RSS sampled from /proc/self/statm.

    .venv/bin/python scripts/soak.py                      # 100000 calls on the tiny test bundle
    .venv/bin/python scripts/soak.py runs/x/bundle -n 1000000 --max-growth-mb 1

After a warm-up (default 1000 calls: ORT arenas, first-use caches), RSS is sampled every
--every calls; growth = last sample - first sample. Exit status 1 if growth > --max-growth-mb (MiB).
Also printed: growth of glibc malloc's in-use bytes (a leak shows there; a one-time heap-top
step of RSS does not).
Observations vary per call (a slow sine sweep + seeded noise), seeds vary, k cycles 1..K, so
every code path of act (all prefix lengths, sampling) is exercised.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def malloc_in_use() -> int | None:
    """Bytes in use by glibc malloc (mallinfo2: main-arena uordblks + mmapped blocks), None off glibc.

    RSS can step up once when the heap top grows (fragmentation, then never trimmed); this figure
    only grows if memory is really kept: a leak shows here, a heap-top step does not.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


def tiny_bundle() -> str:
    """build/tiny_bundle (what `make test-cpp` writes); exported here if missing (needs torch)."""
    path = os.path.join(ROOT, "build", "tiny_bundle")
    if not os.path.isfile(os.path.join(path, "model.onnx")):
        sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
        from tiny_bundle import write_tiny_bundle  # noqa: E402

        write_tiny_bundle(path)
    return path


def soak(bundle: str, calls: int, warmup: int, every: int, threads: int = 1) -> dict:
    from oat_edge import Policy

    p = Policy(bundle, threads=threads)
    i = p.info
    K, shape = i["num_tokens"], (i["n_obs_steps"], i["obs_dim"])
    lo, hi = i.normalization.action_low, i.normalization.action_high
    rng = np.random.default_rng(0)
    base = rng.normal(size=shape).astype(np.float32)
    noise = rng.normal(scale=0.1, size=(997,) + shape).astype(np.float32)  # prime: no short cycle
    obs = np.empty(shape, np.float32)

    def call(n: int):
        np.sin(base + np.float32(n * 1e-3), out=obs)
        np.add(obs, noise[n % len(noise)], out=obs)
        a = p.act(obs, max_tokens=n % K + 1, seed=n)
        if n % 997 == 0 and not (np.isfinite(a).all() and (a >= lo).all() and (a <= hi).all()):
            raise AssertionError(f"call {n}: invalid chunk {a}")

    for n in range(warmup):
        call(n)
    samples = []  # (calls done after warm-up, rss bytes)
    heap0 = malloc_in_use()
    t0 = time.perf_counter()
    for n in range(calls):
        if n % every == 0:
            samples.append((n, rss_bytes()))
        call(warmup + n)
    elapsed = time.perf_counter() - t0
    samples.append((calls, rss_bytes()))
    heap1 = malloc_in_use()
    r = [s for _, s in samples]
    return {
        "bundle": os.path.abspath(bundle),
        "calls": calls,
        "warmup": warmup,
        "every": every,
        "seconds": elapsed,
        "ms_per_call": 1e3 * elapsed / max(calls, 1),
        "rss_first_mb": r[0] / 2**20,
        "rss_last_mb": r[-1] / 2**20,
        "rss_max_mb": max(r) / 2**20,
        "growth_mb": (r[-1] - r[0]) / 2**20,
        "growth_max_mb": (max(r) - r[0]) / 2**20,
        "malloc_in_use_growth_kb": None if heap0 is None else (heap1 - heap0) / 1024,
        "samples": samples,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", nargs="?", help="bundle directory or model.onnx (default: the tiny test bundle)")
    ap.add_argument("-n", "--calls", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--every", type=int, default=1000, help="RSS sample period, in calls")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-growth-mb", type=float, default=1.0)
    ap.add_argument("--json", help="also write the result (with all RSS samples) to this file")
    a = ap.parse_args(argv)
    if a.calls < 1 or a.every < 1 or a.warmup < 0:
        ap.error("--calls and --every must be >= 1, --warmup >= 0")
    res = soak(a.bundle or tiny_bundle(), a.calls, a.warmup, a.every, a.threads)
    if a.json:
        from oat_edge.atomic import write_json

        write_json(a.json, res, indent=1)
    ok = res["growth_mb"] <= a.max_growth_mb
    print(
        f"soak: {res['calls']} act calls after {res['warmup']} warm-up, {res['ms_per_call']:.3f} ms/call; "
        f"RSS {res['rss_first_mb']:.2f} -> {res['rss_last_mb']:.2f} MiB (max {res['rss_max_mb']:.2f}), "
        f"growth {res['growth_mb'] * 1024:+.0f} KiB (limit {a.max_growth_mb * 1024:.0f} KiB"
        + (
            ""
            if res["malloc_in_use_growth_kb"] is None
            else f"; malloc in-use {res['malloc_in_use_growth_kb']:+.0f} KiB"
        )
        + "): "
        f"{'OK' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
