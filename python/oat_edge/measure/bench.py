"""Side-by-side latency benchmark: C++ runtime vs onnxruntime-Python loop vs PyTorch eager.

Batch-1 `act()` (observation in, decoded action chunk out) for each prefix length k, on the same
bundle, the same observation and the same thread count. Backends are interleaved call by call
(round robin, order rotated each round) so that noise on a shared machine hits all of them alike;
only ratios measured in one run are claimed. Greedy decoding, so all three compute the same thing.

    python -m oat_edge.measure.bench [--checkpoint policy.pt] [--ks 1 2 4 8] [--iters 200] [--threads 1]

Without --checkpoint it benchmarks a model of the paper's reference size (random weights: latency
does not depend on the values) exported to a temporary bundle.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def reference_token_policy(obs_dim: int = 42, seed: int = 0):
    """The paper's reference sizes: 1.6 M encoder, 4.2 M decoder, 5 M AR policy."""
    import torch

    from oat_edge.train.normalizer import Normalizer
    from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
    from oat_edge.train.presets import PRESETS
    from oat_edge.train.tokenizer import OATConfig, OATTokenizer

    paper = PRESETS["paper"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = OATTokenizer(OATConfig(**paper["OATConfig"]))
    tok.set_normalizer(Normalizer.fit(rng.uniform(-1, 1, size=(256, tok.cfg.action_dim))))
    pol = ARPolicy(PolicyConfig(obs_dim=obs_dim, **paper["PolicyConfig"]))
    return TokenPolicy(tok, pol, Normalizer.fit(rng.normal(size=(256, obs_dim)))).eval()


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def run(token_policy, bundle: str, ks=(1, 2, 4, 8), iters: int = 200, warmup: int = 10,
        threads: int = 1, seed: int = 0, progress: bool = True) -> dict:
    import torch

    from oat_edge import Policy
    from oat_edge.ort_reference import OrtBundle

    torch.set_num_threads(threads)
    cpp = Policy(bundle, threads=threads)
    ortpy = OrtBundle(bundle, threads=threads)
    info = cpp.info
    rng = np.random.default_rng(seed)
    # a plausible observation: inside the normalizer's range
    norm = info.normalization
    obs = rng.uniform(-1, 1, size=(info.n_obs_steps, info.obs_dim)).astype(np.float32)
    obs = (obs - norm.obs_offset) / norm.obs_scale

    overhead: dict[int, list[float]] = {}

    def call_cpp(k):
        _, st = cpp.act(obs, max_tokens=k, temperature=0.0, return_stats=True)
        overhead.setdefault(k, []).append(st["overhead_ms"] / st["total_ms"])

    backends = {
        "cpp_runtime": call_cpp,
        "ort_python": lambda k: ortpy.act(obs, max_tokens=k, temperature=0.0),
        "torch_eager": lambda k: token_policy.predict(obs, max_tokens=k, temperature=0.0),
    }
    results: dict = {"threads": threads, "iters": iters, "ks": list(ks), "per_k": {}}
    total = len(ks) * iters
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, desc="bench", unit="round", file=sys.stderr,
                       disable=None)  # None: no bar when stderr is not a terminal
        except ImportError:
            pass
    names = list(backends)
    for k in ks:
        for fn in backends.values():
            for _ in range(warmup):
                fn(k)
        overhead[k] = []
        times = {n: [] for n in names}
        for i in range(iters):
            order = names[i % len(names):] + names[:i % len(names)]
            for n in order:
                t = time.perf_counter()
                backends[n](k)
                times[n].append((time.perf_counter() - t) * 1e3)
            if bar:
                bar.update(1)
        row = {n: _percentiles(times[n]) for n in names}
        base = row["cpp_runtime"]["median_ms"]
        for n in names:
            row[n]["speedup_of_cpp"] = row[n]["median_ms"] / base
        row["cpp_overhead_frac_median"] = float(np.median(overhead[k]))
        results["per_k"][str(k)] = row
    if bar:
        bar.close()
    results["provider"] = info["provider"]
    results["ort_version"] = info["ort_version"]
    return results


def format_table(res: dict) -> str:
    lines = [f"batch-1 act() latency, {res['threads']} thread(s), {res['iters']} interleaved rounds, "
             f"provider {res['provider']}, ORT {res['ort_version']}",
             "",
             "| k | C++ runtime median / p99 (ms) | ORT Python loop median / p99 | PyTorch eager median / p99 "
             "| PyTorch ÷ C++ | ORT-Py ÷ C++ | C++ overhead beyond ORT graphs |",
             "|---|---|---|---|---|---|---|"]
    for k, r in res["per_k"].items():
        c, o, t = r["cpp_runtime"], r["ort_python"], r["torch_eager"]
        lines.append(f"| {k} | {c['median_ms']:.2f} / {c['p99_ms']:.2f} | {o['median_ms']:.2f} / {o['p99_ms']:.2f} "
                     f"| {t['median_ms']:.2f} / {t['p99_ms']:.2f} | {t['speedup_of_cpp']:.2f}x "
                     f"| {o['speedup_of_cpp']:.2f}x | {100 * r['cpp_overhead_frac_median']:.2f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="oat-edge bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="TokenPolicy checkpoint (policy.pt); default: reference-size random model")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the results as JSON here (and a .md table beside it)")
    ap.add_argument("--bundle-out", help="keep the benchmarked bundle in this directory (default: a temp dir)")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it is off anyway when stderr is not a terminal)")
    a = ap.parse_args(argv)
    if a.iters < 1 or a.threads < 1:
        print("oat-edge bench: --iters and --threads must be >= 1", file=sys.stderr)
        return 2
    from oat_edge.atomic import OutputError, check_output_dir, check_output_file, write_json, write_text
    try:  # before minutes of timing, not after
        if a.out:
            check_output_file(a.out, "--out")
        if a.bundle_out:
            check_output_dir(a.bundle_out, force=True, flag="--bundle-out")
    except OutputError as exc:
        print(f"oat-edge bench: error: {exc}", file=sys.stderr)
        return 2
    import warnings

    warnings.filterwarnings("ignore")
    from oat_export import export_bundle

    from oat_edge.train.policy import TokenPolicy

    if a.checkpoint:
        if not os.path.isfile(a.checkpoint):
            print(f"oat-edge bench: checkpoint {a.checkpoint!r} not found", file=sys.stderr)
            return 2
        try:
            tp = TokenPolicy.load(a.checkpoint).eval()
        except ValueError as exc:
            print(f"oat-edge bench: error: {exc}", file=sys.stderr)
            return 2
    else:
        tp = reference_token_policy()
    K = tp.policy.cfg.num_tokens
    bad = [k for k in a.ks if not 1 <= k <= K]
    if bad:
        print(f"oat-edge bench: --ks must lie in 1..{K}, got {bad}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        bundle = a.bundle_out or os.path.join(tmp, "bundle")
        export_bundle(tp, bundle, check_parity=False)
        res = run(tp, bundle, ks=a.ks, iters=a.iters, threads=a.threads,
                  progress=not a.no_progress)
    res["model"] = a.checkpoint or "reference size (the paper's), random weights"
    res["params"] = {"policy": sum(p.numel() for p in tp.policy.parameters()),
                     "tokenizer": sum(p.numel() for p in tp.tokenizer.parameters())}
    table = format_table(res)
    print(table)
    if a.out:
        write_json(a.out, res)
        write_text(os.path.splitext(a.out)[0] + ".md", f"Model: {res['model']}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
