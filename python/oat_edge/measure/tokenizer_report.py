"""Tokenizer report: held-out reconstruction MSE vs prefix length k.

    oat-edge tokenizer-report --demos runs/demos.npz \
        --tokenizers runs/tok_oat runs/tok_oatx runs/tok_nocausal runs/tok_bin \
        --out docs/tokenizer_report

For each tokenizer (a run directory holding tokenizer.pt, or the .pt itself): tokenize every
held-out chunk, detokenize its first k tokens (k = 1..K, K = 8 for OAT) and measure the MSE in
normalized units ([-1, 1] per dimension) and in original action units. The baseline predicts the
training split's mean chunk. Writes report.md, recon_mse.png and results.json under --out.
The held-out episodes are the ones recorded by train_tokenizer (config.json), so the report never
scores a tokenizer on chunks it was trained on.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from oat_edge.atomic import atomic_path, check_output_dir, write_json, write_text
from oat_edge.train.dataset import DataConfig, add_source_flags, load_dataset, source_of
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.train_tokenizer import load_tokenizer, recon_mse_by_k

MAX_K_COLUMNS = 8


def _resolve(path):
    pt = os.path.join(path, "tokenizer.pt") if os.path.isdir(path) else path
    cfg_path = os.path.join(os.path.dirname(pt), "config.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    return pt, cfg


def evaluate(demos, tokenizer_paths, names=None, val_fraction=DataConfig.val_fraction,
             seed=DataConfig.seed, max_samples=None, obs_keys=None, action_key=None):
    """demos: a demos .npz or a dataset (see train.dataset.load_dataset)."""
    tokenizer_paths = list(tokenizer_paths)
    if not tokenizer_paths:
        raise ValueError("tokenizers: expected at least one tokenizer path, given []")
    names = names or [os.path.basename(os.path.normpath(p)).replace(".pt", "")
                      for p in tokenizer_paths]
    if len(names) != len(tokenizer_paths):
        raise ValueError(f"names: expected {len(tokenizer_paths)} (one per tokenizer), "
                         f"given {len(names)}")
    loaded = [(n, *_resolve(p)) for n, p in zip(names, tokenizer_paths)]
    toks = [(n, load_tokenizer(pt), cfg) for n, pt, cfg in loaded]
    horizon = toks[0][1].horizon
    for n, tok, _ in toks:
        if tok.horizon != horizon:
            raise ValueError(f"{n}: horizon: expected {horizon} (as {toks[0][0]}), "
                             f"given {tok.horizon}")
    # use the split the tokenizers were trained with; they must all agree
    recorded = {n: cfg.get("val_episodes") for n, _, cfg in toks if cfg.get("val_episodes")}
    if len({json.dumps(v) for v in recorded.values()}) > 1:
        raise ValueError(f"val_episodes: expected every tokenizer trained on the same split, "
                         f"given different splits for {sorted(recorded)}")
    train, val, info = load_dataset(demos, DataConfig(horizon=horizon, val_fraction=val_fraction,
                                                      seed=seed), obs_keys, action_key)
    if recorded:
        val_eps = next(iter(recorded.values()))
        if sorted(val_eps) != sorted(info["val_episodes"]):
            # re-split exactly as recorded
            allc = type(train)(*[torch.cat([a, b]) for a, b in
                                 zip((train.obs, train.actions, train.episode, train.task),
                                     (val.obs, val.actions, val.episode, val.task))])
            m = torch.from_numpy(np.isin(allc.episode.numpy(), val_eps))
            train, val = allc.subset(~m), allc.subset(m)
    if len(val) == 0:
        raise ValueError("held-out split: expected at least one chunk, given 0 "
                         "(raise --val-fraction or use more episodes)")
    val_actions = val.actions if max_samples is None else val.actions[:max_samples]

    # baseline: the mean training chunk, scored with a normalizer fitted like the tokenizers'
    norm = Normalizer.fit(train.actions)
    mean_chunk = train.actions.mean(0, keepdim=True)
    base_norm = float(((norm.normalize(val_actions) - norm.normalize(mean_chunk)) ** 2).mean())
    base_raw = float(((val_actions - mean_chunk) ** 2).mean())

    results = {"demos": str(demos), "val_chunks": len(val_actions),
               "val_episodes": sorted(set(val.episode.tolist())),
               "baseline_mean_chunk": {"mse_norm": base_norm, "mse_raw": base_raw},
               "tokenizers": {}}
    for name, tok, _cfg in toks:
        K = tok.num_tokens
        ks = sorted(set(list(range(1, min(K, MAX_K_COLUMNS) + 1)) + [K]))
        with torch.no_grad():
            r = recon_mse_by_k(tok, val_actions, ks)
        kind = tok.checkpoint()["kind"]
        entry = {"kind": kind, "num_tokens": K, "codebook_size": tok.codebook_size,
                 "params": int(sum(p.numel() for p in tok.parameters())),
                 "mse_norm": {str(k): v[0] for k, v in r.items()},
                 "mse_raw": {str(k): v[1] for k, v in r.items()}}
        if kind != "bin":
            m = [r[k][0] for k in range(1, K + 1)]
            entry["monotonic_in_k"] = bool(all(b < a for a, b in zip(m, m[1:])))
            entry["full_k_below_10pct_of_baseline"] = bool(m[-1] < 0.1 * base_norm)
        results["tokenizers"][name] = entry
    return results


def write_markdown(results, path):
    base = results["baseline_mean_chunk"]
    kmax = max(min(t["num_tokens"], MAX_K_COLUMNS) for t in results["tokenizers"].values())
    cols = [str(k) for k in range(1, kmax + 1)]
    eps = results["val_episodes"]
    lines = ["# Tokenizer report: held-out reconstruction MSE vs prefix length k", "",
             f"Demos `{results['demos']}`; {results['val_chunks']} held-out chunks from "
             f"{len(eps)} held-out episodes (ids {', '.join(map(str, eps[:12]))}"
             f"{', ...' if len(eps) > 12 else ''}).",
             "Each chunk is tokenized, its first k tokens are detokenized (the rest masked), and "
             "the MSE is taken against the original chunk. `full` = all K tokens.", ""]
    for unit, key, b in (("normalized units ([-1, 1] per dimension)", "mse_norm", base["mse_norm"]),
                         ("original action units", "mse_raw", base["mse_raw"])):
        lines += [f"## MSE, {unit}", "",
                  "| tokenizer | K | " + " | ".join(f"k={c}" for c in cols) + " | full |",
                  "|---|---|" + "---|" * (len(cols) + 1)]
        for name, t in results["tokenizers"].items():
            vals = [f"{t[key][c]:.4g}" if c in t[key] else "" for c in cols]
            lines.append(f"| {name} ({t['kind']}) | {t['num_tokens']} | " + " | ".join(vals)
                         + f" | {t[key][str(t['num_tokens'])]:.4g} |")
        lines.append("| mean chunk (baseline) | 0 | " + " | ".join(f"{b:.4g}" for _ in cols)
                     + f" | {b:.4g} |")
        lines.append("")
    lines += ["## Checks (normalized units)", ""]
    for name, t in results["tokenizers"].items():
        if "monotonic_in_k" in t:
            full = t["mse_norm"][str(t["num_tokens"])]
            lines.append(f"- {name}: MSE strictly decreasing in k=1..{t['num_tokens']}: "
                         f"**{'yes' if t['monotonic_in_k'] else 'no'}**; full-K MSE "
                         f"{full:.4g} = {100 * full / base['mse_norm']:.1f}% of the mean-chunk "
                         f"baseline (target < 10%): "
                         f"**{'yes' if t['full_k_below_10pct_of_baseline'] else 'no'}**")
    lines += ["", "![reconstruction MSE vs k](recon_mse.png)", ""]
    write_text(path, "\n".join(lines))


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    base = results["baseline_mean_chunk"]
    for ax, key, title in ((axes[0], "mse_norm", "normalized units"),
                           (axes[1], "mse_raw", "original units")):
        for name, t in results["tokenizers"].items():
            ks = [k for k in sorted(int(k) for k in t[key]) if k <= MAX_K_COLUMNS]
            ax.plot(ks, [t[key][str(k)] for k in ks], marker="o", label=f"{name} ({t['kind']})")
        ax.axhline(base[key], color="gray", ls="--", label="mean chunk")
        ax.set_yscale("log")
        ax.set_xlabel("prefix length k (tokens)")
        ax.set_ylabel("held-out MSE")
        ax.set_title(f"reconstruction MSE, {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="held-out reconstruction MSE vs prefix length")
    add_source_flags(p)
    p.add_argument("--tokenizers", nargs="+", required=True,
                   help="run directories (holding tokenizer.pt) or tokenizer .pt files")
    p.add_argument("--names", nargs="+", default=None)
    p.add_argument("--out", default="runs/tokenizer_report",
                   help="directory for report.md, recon_mse.png, results.json")
    p.add_argument("--force", action="store_true", help="replace a report already in --out")
    p.add_argument("--val-fraction", type=float, default=DataConfig.val_fraction)
    p.add_argument("--seed", type=int, default=DataConfig.seed)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    check_output_dir(args.out, force=args.force)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    res = evaluate(source_of(args), args.tokenizers, args.names, args.val_fraction, args.seed,
                   obs_keys=args.obs_keys, action_key=args.action_key)
    write_json(os.path.join(args.out, "results.json"), res, indent=1)
    write_markdown(res, os.path.join(args.out, "report.md"))
    plot(res, os.path.join(args.out, "recon_mse.png"))
    with open(os.path.join(args.out, "report.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
