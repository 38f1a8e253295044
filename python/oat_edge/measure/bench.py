"""Side-by-side latency benchmark: C++ runtime vs onnxruntime-Python loop vs PyTorch eager vs
torch.compile, each beside a measured lower bound for this machine (roofline.py, docs/BENCH.md).

Batch-1 `act()` (observation in, decoded action chunk out) for each prefix length k, on the same
bundle, the same observation and the same thread count. Backends are interleaved call by call
(round robin, order rotated each round) so that noise on a shared machine hits all of them alike;
only ratios measured in one run are claimed. Greedy decoding, so all of them compute the same thing.

    python -m oat_edge.measure.bench [BUNDLE] [--checkpoint policy.pt] [--ks 1 2 4 8] [--iters 200]
        [--threads 1] [--no-compile] [--camera-reference 64|224]

Without BUNDLE or --checkpoint it benchmarks a model of the paper's reference size (random weights:
latency does not depend on the values) exported to a temporary bundle. With --checkpoint only,
that checkpoint is exported. With BUNDLE only, the PyTorch rows are left out (no weights to run);
give its checkpoint too for them. A bundle with named camera inputs, a camera checkpoint, or
--camera-reference gets the camera breakdown instead (camera_bench.py).

torch.compile row: the same PyTorch policy with its three exported graphs (prefill, step, decoder)
each wrapped in torch.compile (default inductor backend), what a PyTorch user would try first. The
compile happens in its first calls, timed apart and reported as compile_s; per-act latencies are
measured after it. If compiling fails here, the row says why and the other rows go on.
"""
from __future__ import annotations

import argparse
import copy
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


def compiled_token_policy(token_policy, backend="inductor"):
    """A copy of `token_policy` whose prefill, step and decoder run through torch.compile (the
    eager copy is untouched). Compilation happens on the first calls."""
    import torch

    c = copy.deepcopy(token_policy).eval()
    for owner, name in ((c.policy, "prefill"), (c.policy, "step"), (c.tokenizer, "decoder")):
        setattr(owner, name, torch.compile(getattr(owner, name), backend=backend))
    return c


def _reason(exc: BaseException) -> str:
    """One line: the exception and, when it wraps another (a compiler's), the innermost cause."""
    def line(e):
        first = (str(e).strip().splitlines() or [""])[0][:300]
        return f"{type(e).__name__}: {first}".rstrip(": ")

    root = exc
    while (getattr(root, "inner_exception", None) or root.__cause__) is not None:
        root = getattr(root, "inner_exception", None) or root.__cause__
    return line(exc) + (f" ({line(root)})" if root is not exc else "")


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def machine_bounds(bundle: str, threads: int) -> tuple[dict, object]:
    """(graph costs, measured rates) of `bundle` on this machine (roofline.py)."""
    from oat_edge.measure import roofline

    costs = roofline.bundle_costs(bundle)
    return costs, roofline.measure_rates(costs, threads)


def run(token_policy, bundle: str, ks=(1, 2, 4, 8), iters: int = 200, warmup: int = 10,
        threads: int = 1, seed: int = 0, progress: bool = True, compile_backend: str | None = "inductor",
        bounds: bool = True) -> dict:
    """token_policy: the PyTorch model of `bundle` (None: no PyTorch rows). compile_backend: the
    torch.compile backend of the torch_compile row (None: no such row)."""
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
    }
    results: dict = {"threads": threads, "iters": iters, "ks": list(ks), "per_k": {}}
    if token_policy is not None:
        backends["torch_eager"] = lambda k: token_policy.predict(obs, max_tokens=k, temperature=0.0)
    if token_policy is not None and compile_backend is not None:
        compiled = compiled_token_policy(token_policy, compile_backend)
        backends["torch_compile"] = lambda k: compiled.predict(obs, max_tokens=k, temperature=0.0)
        results["torch_compile"] = {"backend": getattr(compile_backend, "__name__", compile_backend),
                                    "compile_s": 0.0, "first_call_s": {}, "max_abs_diff_vs_eager": 0.0}
    if bounds:
        costs, rates = machine_bounds(bundle, threads)
        results["bounds"] = {"graphs": costs, "rates": rates.to_dict()}
    total = len(ks) * iters
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, desc="bench", unit="round", file=sys.stderr,
                       disable=None)  # None: no bar when stderr is not a terminal
        except ImportError:
            pass
    for k in ks:
        if "torch_compile" in backends:
            _warm_compiled(results["torch_compile"], backends, token_policy, compiled, obs, k)
        names = list(backends)
        for n in names:
            for _ in range(warmup):
                backends[n](k)
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
        if token_policy is not None:  # the same model on both sides (a wrong --checkpoint shows here)
            want = np.asarray(token_policy.predict(obs, max_tokens=k, temperature=0.0))
            row["max_abs_diff_cpp_vs_eager"] = float(np.abs(cpp.act(obs, max_tokens=k, temperature=0.0) - want).max())
        results["per_k"][str(k)] = row
    if bar:
        bar.close()
    if bounds:
        from oat_edge.measure import roofline

        rates = roofline.faster(rates, roofline.measure_rates(costs, threads))
        results["bounds"]["rates"] = rates.to_dict()
        for k, row in results["per_k"].items():
            row["bound"] = roofline.act_bound_ms(costs, rates, int(k))
            for n in LABELS:
                if n in row:
                    row[n]["ratio_to_bound"] = row[n]["median_ms"] / row["bound"]["ms"]
    results["provider"] = info["provider"]
    results["ort_version"] = info["ort_version"]
    return results


def _warm_compiled(entry: dict, backends: dict, eager, compiled, obs, k) -> None:
    """First call of the compiled policy at k (compiles, or recompiles): timed into compile_s and
    checked against eager; on failure the row is dropped and `entry["error"]` says why."""
    import torch

    t = time.perf_counter()
    try:
        got = compiled.predict(obs, max_tokens=k, temperature=0.0)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: report it, keep benchmarking
        entry["error"] = _reason(exc)
        del backends["torch_compile"]
        return
    dt = time.perf_counter() - t
    entry["first_call_s"][str(k)] = dt
    entry["compile_s"] += dt
    want = eager.predict(obs, max_tokens=k, temperature=0.0)
    entry["max_abs_diff_vs_eager"] = max(entry["max_abs_diff_vs_eager"],
                                         float(torch.as_tensor(got - want).abs().max()))


LABELS = {"cpp_runtime": "C++ runtime", "ort_python": "ORT Python loop", "torch_eager": "PyTorch eager",
          "torch_compile": "torch.compile"}


def format_table(res: dict) -> str:
    first = next(iter(res["per_k"].values()))
    names = [n for n in LABELS if n in first]
    bounds = "bound" in first
    lines = [f"batch-1 act() latency, {res['threads']} thread(s), {res['iters']} interleaved rounds, "
             f"provider {res['provider']}, ORT {res['ort_version']}"]
    tc = res.get("torch_compile")
    if tc and "error" in tc:
        lines.append(f"torch.compile ({tc['backend']}): no row, compiling failed here: {tc['error']}")
    elif tc:
        lines.append(f"torch.compile ({tc['backend']}): {tc['compile_s']:.1f} s compiling in its first calls "
                     f"(excluded below), outputs within {tc['max_abs_diff_vs_eager']:.1e} of eager")
    diffs = [r["max_abs_diff_cpp_vs_eager"] for r in res["per_k"].values() if "max_abs_diff_cpp_vs_eager" in r]
    if diffs:
        lines.append(f"C++ runtime and PyTorch actions within {max(diffs):.1e} of each other")
    if bounds:
        from oat_edge.measure import roofline

        lines.append(roofline.describe(res["bounds"]["graphs"], roofline.Rates(**res["bounds"]["rates"])))
    head = ["k"] + (["lower bound (ms)"] if bounds else [])
    head += [f"{LABELS[n]} median / p99 (ms)" + (" [÷ bound]" if bounds else "") for n in names]
    head += [f"{LABELS[n]} ÷ C++" for n in names if n != "cpp_runtime"] + ["C++ overhead beyond ORT graphs"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, r in res["per_k"].items():
        cells = [k] + ([f"{r['bound']['ms']:.3f}"] if bounds else [])
        for n in names:
            c = f"{r[n]['median_ms']:.2f} / {r[n]['p99_ms']:.2f}"
            cells.append(c + (f" [{r[n]['ratio_to_bound']:.1f}x]" if bounds else ""))
        cells += [f"{r[n]['speedup_of_cpp']:.2f}x" for n in names if n != "cpp_runtime"]
        cells.append(f"{100 * r['cpp_overhead_frac_median']:.2f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fail(msg: str) -> int:
    print(f"oat-edge bench: error: {msg}", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="oat-edge bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", help="bundle directory to benchmark (default: export --checkpoint, "
                    "or a reference-size random model, to a temporary bundle)")
    ap.add_argument("--checkpoint", help="policy checkpoint (policy.pt, state or camera policy): the PyTorch "
                    "rows run it; without BUNDLE it is exported and benchmarked")
    ap.add_argument("--camera-reference", type=int, metavar="SIZE",
                    help="benchmark a random-weight camera policy of the pixel recipe's sizes (two cameras, "
                         "SIZE x SIZE frames, e.g. 64 or 224)")
    ap.add_argument("--vision", choices=["default", "resnet18"], default="default",
                    help="image encoder of --camera-reference (default: the recipe's)")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row")
    ap.add_argument("--out", help="write the results as JSON here (and a .md table beside it)")
    ap.add_argument("--bundle-out", help="keep the benchmarked bundle in this directory (default: a temp dir)")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it is off anyway when stderr is not a terminal)")
    return ap


def _load_checkpoint(path: str):
    """(TokenPolicy, ObservationEncoder or None) from a state or camera policy checkpoint."""
    from oat_export.policy_checkpoint import policy_from_checkpoint

    from oat_edge.train.checkpoint import load_checkpoint

    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} not found")
    ck = load_checkpoint(path)
    try:
        return policy_from_checkpoint(ck)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"checkpoint {path}: not a policy checkpoint written by oat-edge train-policy "
                         f"(missing or malformed {exc})") from None


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    if a.iters < 1 or a.threads < 1:
        print("oat-edge bench: --iters and --threads must be >= 1", file=sys.stderr)
        return 2
    if a.camera_reference is not None and (a.bundle or a.checkpoint):
        return _fail("--camera-reference builds its own model: give it without BUNDLE and --checkpoint")
    if a.camera_reference is not None and not 16 <= a.camera_reference <= 1024:
        return _fail(f"--camera-reference: expected a frame size in 16..1024, got {a.camera_reference}")
    if a.bundle and a.bundle_out:
        return _fail("--bundle-out keeps an exported bundle; BUNDLE is benchmarked where it is")
    from oat_edge.atomic import OutputError, check_output_dir, check_output_file, write_json, write_text
    try:  # before minutes of timing, not after
        if a.out:
            check_output_file(a.out, "--out")
        if a.bundle_out:
            check_output_dir(a.bundle_out, force=True, flag="--bundle-out")
    except OutputError as exc:
        return _fail(str(exc))
    import warnings

    warnings.filterwarnings("ignore")
    from oat_edge import manifest as mf
    from oat_edge.errors import BundleError

    tp = enc = None
    try:
        if a.bundle:
            manifest = mf.load_manifest(a.bundle)
        if a.checkpoint:
            tp, enc = _load_checkpoint(a.checkpoint)
        elif a.camera_reference is not None:
            from oat_edge.measure.camera_bench import reference_pixel_policy

            tp, enc = reference_pixel_policy(a.camera_reference, vision=a.vision)
        elif not a.bundle:
            tp = reference_token_policy()
    except (ValueError, BundleError) as exc:
        return _fail(str(exc))
    camera = enc is not None or (a.bundle and manifest.get("observation") is not None)
    if a.bundle and tp is not None and (enc is None) == camera:
        return _fail(f"--checkpoint is a {'camera' if enc is not None else 'state'} policy but {a.bundle} is a "
                     f"{'camera' if camera else 'state'} bundle: give the checkpoint the bundle was exported from")
    K = tp.policy.cfg.num_tokens if tp is not None else manifest["tokenizer"]["num_tokens"]
    bad = [k for k in a.ks if not 1 <= k <= K]
    if bad:
        print(f"oat-edge bench: --ks must lie in 1..{K}, got {bad}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        bundle = a.bundle
        if not bundle:
            from oat_export import export_bundle

            bundle = a.bundle_out or os.path.join(tmp, "bundle")
            export_bundle(tp, bundle, check_parity=False, observation_encoder=enc)
        if camera:
            from oat_edge.measure import camera_bench
            from oat_edge.train.pixel_policy import PixelTokenPolicy

            pixel = PixelTokenPolicy(tp.tokenizer, enc, tp.policy) if tp is not None else None
            res = camera_bench.run(bundle, pixel, ks=a.ks, iters=a.iters, threads=a.threads,
                                   compile_backend=None if a.no_compile else "inductor")
            table = camera_bench.format_table(res)
        else:
            res = run(tp, bundle, ks=a.ks, iters=a.iters, threads=a.threads, progress=not a.no_progress,
                      compile_backend=None if a.no_compile else "inductor")
            table = format_table(res)
    res["model"] = (a.checkpoint or (f"pixel recipe sizes, {a.vision} encoder, two cameras at "
                                     f"{a.camera_reference}x{a.camera_reference}, random weights"
                                     if a.camera_reference else None)
                    or (a.bundle and f"{a.bundle} (no checkpoint: no PyTorch rows)")
                    or "reference size (the paper's), random weights")
    if tp is not None:
        res["params"] = {"policy": sum(p.numel() for p in tp.policy.parameters()),
                         "tokenizer": sum(p.numel() for p in tp.tokenizer.parameters())}
        if enc is not None:
            res["params"]["observation_encoder"] = sum(p.numel() for p in enc.parameters())
    print(table)
    if a.out:
        write_json(a.out, res)
        write_text(os.path.splitext(a.out)[0] + ".md", f"Model: {res['model']}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
