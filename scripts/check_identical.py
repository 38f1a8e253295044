#!/usr/bin/env python3
"""Pin a bundle's tokens and actions: record them once, then check a later runtime reproduces them.

Runs greedy and seeded sampled generate/act (batch 1 and 3, several prefix lengths and sampling
settings), detokenize and tokenize on fixed observations, and compares every array bit for bit
with a recorded `.npz`. A refactor of the runtime that claims "behaviour unchanged" must pass it.

    scripts/check_identical.py models/oat-metaworld-mt3 tests/data/golden_mt3.npz --record
    scripts/check_identical.py models/oat-metaworld-mt3 tests/data/golden_mt3.npz

Exact equality holds for one ONNX Runtime version on one CPU family; the recording keeps both, and
`compare` says when they differ (float kernels may then round differently).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import numpy as np

# (name, max_tokens, temperature, top_k, seed): None = the bundle's default
CASES = (
    ("greedy_k8", None, 0.0, None, None),
    ("greedy_k1", 1, 0.0, None, None),
    ("greedy_k4", 4, 0.0, None, None),
    ("sampled_default", None, None, None, 123),
    ("sampled_t07_all", None, 0.7, 0, 7),
    ("sampled_k2_top3", 2, 1.5, 3, 2**63 + 5),
)


def fixed_observations(policy, rows: int = 3, seed: int = 0) -> np.ndarray:
    """Raw observations [rows, n_obs_steps, obs_dim] whose normalized values are uniform in [-1, 1]."""
    scale, offset = _obs_normalization(policy)
    s, d = _obs_shape(policy)
    norm = np.random.default_rng(seed).uniform(-1, 1, size=(rows, s, d))
    return ((norm - offset) / scale).astype(np.float32)


def _obs_normalization(policy):
    norm = policy.info.normalization
    return norm.obs_scale.astype(np.float64), norm.obs_offset.astype(np.float64)


def _obs_shape(policy):
    return policy.info.n_obs_steps, policy.info.obs_dim


def outputs(bundle: str) -> dict[str, np.ndarray]:
    """Every pinned array of one bundle, computed by the installed runtime."""
    import oat_edge

    policy = oat_edge.Policy(bundle)
    obs = fixed_observations(policy)
    out: dict[str, np.ndarray] = {"obs": obs}
    for name, k, temp, top_k, seed in CASES:
        opts = dict(max_tokens=k, temperature=temp, top_k=top_k, seed=seed)
        out[f"{name}/ids_b1"] = policy.generate(obs[0], **opts)
        out[f"{name}/ids_b3"] = policy.generate(obs, **opts)
        out[f"{name}/act_b1"] = policy.act(obs[0], **opts)
        out[f"{name}/act_b3"] = policy.act(obs, **opts)
    ids = out["greedy_k8/ids_b3"]
    for k in (1, 3, ids.shape[1]):
        out[f"detokenize_k{k}"] = policy.detokenize(ids[:, :k])
    out["tokenize"] = policy.tokenize(out["greedy_k8/act_b3"])
    return out


def _environment() -> dict[str, str]:
    import onnxruntime

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    keep = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "fma")
                    flags = " ".join(x for x in line.split()[2:] if x in keep)
                    break
    except OSError:
        pass
    return {"ort_version": onnxruntime.__version__, "cpu": f"{platform.machine()} {flags}".strip()}


def record(bundle: str, path: str) -> None:
    arrays = outputs(bundle)
    env = _environment()
    arrays.update({f"env/{k}": np.asarray(v) for k, v in env.items()})
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a committed file unreadable to others
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def compare(bundle: str, path: str) -> tuple[list[str], bool]:
    """(mismatching array names, whether this machine matches the recording's ORT + CPU)."""
    want = np.load(path)
    got = outputs(bundle)
    env = _environment()
    same_env = all(str(want[f"env/{k}"]) == v for k, v in env.items())
    if not np.array_equal(got["obs"], want["obs"]):
        return ["obs (the fixed observations differ: the bundle's normalization changed)"], same_env
    bad = [k for k in want.files if not k.startswith("env/") and k != "obs"
           and (k not in got or got[k].dtype != want[k].dtype or not np.array_equal(got[k], want[k]))]
    bad += [k for k in got if k not in want.files]
    return bad, same_env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("golden", help=".npz to write (--record) or compare against")
    ap.add_argument("--record", action="store_true", help="write the golden file instead of comparing")
    a = ap.parse_args(argv)
    if a.record:
        record(a.bundle, a.golden)
        print(f"recorded {a.golden}")
        return 0
    bad, same_env = compare(a.bundle, a.golden)
    if bad:
        print("DIFFERENT: " + ", ".join(bad) + ("" if same_env else
              " (recorded with another ONNX Runtime or CPU family: re-record on the reference machine)"))
        return 1
    print("identical: every token and action matches the recording bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
