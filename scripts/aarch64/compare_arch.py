"""Greedy tokens and actions of one bundle on x86-64 and on aarch64 (under QEMU), compared.

    python scripts/aarch64/compare_arch.py BUNDLE --x86 GREEDY_DUMP_X86 --aarch64 GREEDY_DUMP_A64 \
        --qemu QEMU --sysroot /usr/aarch64-linux-gnu --ort-aarch64 LIB [--n 64]

Both binaries are scripts/aarch64/greedy_dump.cpp built for each architecture. The observations are
drawn so that they normalize to uniform [-1, 1] (the range the policy was trained on), written once
as raw float32 and fed to both. Exit status 1 when a token differs or an action is off by more than
--atol; the table it prints is the evidence.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from oat_edge.manifest import load_manifest


def observations(bundle: str, n: int, seed: int) -> np.ndarray:
    man = load_manifest(bundle)
    pol, norm = man["policy"], man["normalization"]
    scale = np.asarray(norm["obs_scale"], np.float64)
    offset = np.asarray(norm["obs_offset"], np.float64)
    u = np.random.default_rng(seed).uniform(-1, 1, (n, pol["n_obs_steps"], pol["obs_dim"]))
    return ((u - offset) / scale).astype("<f4")


def run_dump(cmd: list[str], bundle: str, obs_file: str, n: int, env: dict | None = None):
    res = subprocess.run([*cmd, bundle, obs_file, str(n)], capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    tokens, actions = [], []
    for line in res.stdout.splitlines():
        head, tail = line.split(" actions ")
        tokens.append([int(t) for t in head.split()[1:]])
        actions.append([float(a) for a in tail.split()])
    found = [ln for ln in res.stderr.splitlines() if ln.startswith("greedy_dump: ")]
    return tokens, np.asarray(actions), found[-1][len("greedy_dump: ") :] if found else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--x86", required=True, help="greedy_dump built for the host")
    ap.add_argument("--aarch64", required=True, help="greedy_dump built for aarch64")
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--sysroot", default="/usr/aarch64-linux-gnu")
    ap.add_argument("--ort-aarch64", required=True, help="the aarch64 libonnxruntime.so")
    ap.add_argument("--n", type=int, default=64, help="observations (default 64)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        obs_file = os.path.join(tmp, "obs.f32")
        observations(a.bundle, a.n, a.seed).tofile(obs_file)
        tok_x, act_x, ort_x = run_dump([a.x86], a.bundle, obs_file, a.n)
        env = dict(os.environ, OAT_EDGE_ORT_LIBRARY=a.ort_aarch64)
        tok_a, act_a, ort_a = run_dump([a.qemu, "-L", a.sysroot, a.aarch64], a.bundle, obs_file, a.n, env)

    same_tokens = sum(x == y for x, y in zip(tok_x, tok_a))
    err = np.abs(act_x - act_a)
    bit_equal = int(np.sum(np.all(act_x == act_a, axis=1)))
    print(f"bundle {a.bundle}: {a.n} observations, greedy, all K tokens")
    print(f"  x86-64 : {ort_x}")
    print(f"  aarch64: {ort_a} under {os.path.basename(a.qemu)}")
    print(f"  tokens equal      : {same_tokens} / {a.n}")
    print(f"  actions bit-equal : {bit_equal} / {a.n} chunks")
    print(f"  max |action diff| : {err.max():.3g} (tolerance {a.atol:g}); mean {err.mean():.3g}")
    ok = same_tokens == a.n and len(tok_x) == len(tok_a) == a.n and err.max() <= a.atol
    if not ok:
        for i, (x, y) in enumerate(zip(tok_x, tok_a)):
            if x != y:
                print(f"  first token difference at observation {i}: x86-64 {x} vs aarch64 {y}")
                break
    print("  PASS" if ok else "  FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
