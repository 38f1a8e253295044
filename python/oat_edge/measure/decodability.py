"""How often does a token sequence fail to decode? FAST (DCT + BPE) vs OAT (every OAT id
sequence decodes by construction; FAST's BPE sequences need not).

    python -m oat_edge.measure.decodability --demos runs/demos_mt3.npz \
        [--oat runs/.../tokenizer.pt] --samples 2000 --out docs/decodability.json

Sequence families (each id drawn uniformly from the tokenizer's content ids; EOS/BOS excluded):
  random     uniformly random ids, length uniform in 1..max_len
  near_miss  the tokenization of a real held-out chunk with one error, a third each:
             replace (one token -> random id), drop (one token removed),
             insert (random id inserted at a random place; cut to max_len, because a policy
             emits at most max_len tokens: for OAT that is K fixed slots)
  prefix     every prefix (length 1..L) of the tokenizations of real held-out chunks
Undecodable: FAST — the sequence does not expand to exactly H*D coefficients (decoder falls back
to zeros); OAT — detokenize raises, or its output is non-finite or outside the normalization
bounds [low, high]. Also reported ("decodable_out_of_range"): the fraction of sequences that decode but whose
*normalized* chunk leaves [-1, 1] by more than OUT_OF_RANGE_MARGIN before the runtime's clamp
(a valid but wild output; the margin ignores FAST's coefficient-rounding ripple at saturated
actions).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

FAMILIES = ("random", "near_miss", "prefix")
EDITS = ("replace", "drop", "insert")
OUT_OF_RANGE_MARGIN = 0.1


# -- sequence generators -------------------------------------------------------------------------

def random_sequences(rng, n, vocab, max_len):
    return [rng.integers(0, vocab, size=int(rng.integers(1, max_len + 1))).tolist() for _ in range(n)]


def near_miss_sequences(rng, real, n, vocab, max_len):
    """-> (sequences, edit kind per sequence). `real`: non-empty list of id lists."""
    seqs, kinds = [], []
    for i in range(n):
        s = list(real[int(rng.integers(len(real)))])
        kind = EDITS[i % 3]
        if kind == "drop" and len(s) < 2:
            kind = "replace"  # dropping the only token leaves nothing to decode
        if kind == "replace":
            s[int(rng.integers(len(s)))] = int(rng.integers(vocab))
        elif kind == "drop":
            del s[int(rng.integers(len(s)))]
        else:
            s.insert(int(rng.integers(len(s) + 1)), int(rng.integers(vocab)))
            s = s[:max_len]
        seqs.append(s)
        kinds.append(kind)
    return seqs, kinds


def prefix_sequences(real):
    return [list(s[:k]) for s in real for k in range(1, len(s) + 1)]


# -- decodability checks ---------------------------------------------------------------------------

def fast_check(tok):
    """-> fn(seqs) -> (decodable bool [N], out_of_range bool [N]) for a fitted FASTTokenizer."""
    def check(seqs):
        a, ok = tok.detokenize_normalized(seqs)
        wild = np.abs(a).max(axis=(1, 2)) > 1.0 + OUT_OF_RANGE_MARGIN if len(seqs) else np.zeros(0, bool)
        return ok, ok & wild
    return check


def oat_check(tok, batch=512):
    """-> fn(seqs) -> (decodable, out_of_range) for an OATTokenizer-like object with
    detokenize(ids [B, k]) -> raw actions, normalizer (low/high) and optionally decode_codes."""
    low = tok.normalizer.low.detach().cpu().numpy().astype(np.float64)
    high = tok.normalizer.high.detach().cpu().numpy().astype(np.float64)
    tol = 1e-5 * (1.0 + np.abs(high - low))

    def run(ids):
        try:
            a = tok.detokenize(torch.as_tensor(ids, dtype=torch.int64))
        except ValueError:
            return np.zeros(len(ids), bool)
        a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
        inside = np.isfinite(a).all(axis=(1, 2)) & ((a >= low - tol) & (a <= high + tol)).all(axis=(1, 2))
        return inside

    def raw_range(ids):
        # normalized decoder output before the clamp (information only)
        if not hasattr(tok, "decode_codes"):
            return np.zeros(len(ids), bool)
        k = len(ids[0])
        full = torch.zeros(len(ids), tok.num_tokens, dtype=torch.int64)
        full[:, :k] = torch.as_tensor(ids, dtype=torch.int64)
        with torch.no_grad():
            a = tok.decode_codes(tok.fsq.ids_to_codes(full), k)
        return (a.abs().amax(dim=(1, 2)) > 1.0 + OUT_OF_RANGE_MARGIN).cpu().numpy()

    def check(seqs):
        ok = np.zeros(len(seqs), bool)
        wild = np.zeros(len(seqs), bool)
        lengths = np.array([len(s) for s in seqs])
        for n in np.unique(lengths):
            idx = np.flatnonzero(lengths == n)
            for j in range(0, len(idx), batch):
                part = idx[j: j + batch]
                ids = [seqs[i] for i in part]
                if n == 0:
                    continue  # nothing to decode: undecodable
                ok[part] = run(ids)
                if 1 <= n <= tok.num_tokens:
                    wild[part] = raw_range(ids) & ok[part]
        return ok, wild
    return check


def _rate(mask):
    return float(np.mean(mask)) if len(mask) else 0.0


def measure(check, real, vocab, max_len, n, rng, prefix_real=None):
    """Undecodable fractions for the three families. `check(seqs) -> (decodable, out_of_range)`,
    `real`: tokenizations (id lists) of held-out chunks (near-miss source); `prefix_real`: those
    whose every prefix is tried (default: `real`)."""
    prefix_real = real if prefix_real is None else prefix_real
    out = {}
    seqs = random_sequences(rng, n, vocab, max_len)
    ok, wild = check(seqs)
    out["random"] = {"n": len(seqs), "undecodable": _rate(~ok), "decodable_out_of_range": _rate(wild)}
    seqs, kinds = near_miss_sequences(rng, real, n, vocab, max_len)
    ok, wild = check(seqs)
    kinds = np.array(kinds)
    out["near_miss"] = {"n": len(seqs), "undecodable": _rate(~ok), "decodable_out_of_range": _rate(wild),
                        "by_edit": {k: _rate(~ok[kinds == k]) for k in EDITS}}
    seqs = prefix_sequences(prefix_real)
    ok, wild = check(seqs)
    out["prefix"] = {"n": len(seqs), "undecodable": _rate(~ok), "decodable_out_of_range": _rate(wild),
                     "full_length_undecodable": _rate(~check([list(s) for s in prefix_real])[0])}
    return out


# -- the experiment ------------------------------------------------------------------------------

def run_experiment(demos, oat_path=None, samples=2000, prefix_chunks=200, seed=0, scale=10.0,
                   vocab_size=1024, max_tokens=128, horizon=32, max_fit_chunks=0, log=print):
    from ..train.dataset import DataConfig, load_dataset
    from ..train.fast_tokenizer import FASTTokenizer
    from ..train.normalizer import Normalizer
    from ..train.tokenizer import OATConfig, OATTokenizer

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    oat = None
    if oat_path:
        oat = OATTokenizer.load(oat_path).eval()
        horizon = oat.horizon
    train, val, info = load_dataset(demos, DataConfig(horizon=horizon))
    fit_actions = train.actions
    if max_fit_chunks and len(fit_actions) > max_fit_chunks:
        fit_actions = fit_actions[torch.from_numpy(rng.choice(len(fit_actions), max_fit_chunks, replace=False))]
    res = {"demos": str(demos), "train_chunks": len(train), "heldout_chunks": len(val),
           "samples": samples, "seed": seed}

    # FAST
    t0 = time.time()
    fast = FASTTokenizer(info["action_dim"], horizon, scale=scale, vocab_size=vocab_size,
                         max_tokens=max_tokens).fit(fit_actions)
    fit_s = time.time() - t0
    full = fast.tokenize_full(val.actions)
    lens = np.array([len(s) for s in full])
    cut = [s[:max_tokens] for s in full]
    rec, ok = fast.detokenize(cut)
    raw = val.actions.numpy()
    nrm = lambda x: fast.normalizer.normalize(torch.as_tensor(x)).numpy()  # noqa: E731
    res["fast"] = {
        "config": {"scale": scale, "vocab_size": vocab_size, "max_tokens": max_tokens,
                   "eos_id": fast.eos_id, "fit_chunks": len(fit_actions)},
        "fit_seconds": round(fit_s, 2), "base_symbols": fast.n_base, "merges": len(fast.merges),
        "heldout": {"tokens_mean": float(lens.mean()), "tokens_min": int(lens.min()),
                    "tokens_max": int(lens.max()), "over_max_tokens": _rate(lens > max_tokens),
                    "decodable": _rate(ok),
                    "mse_normalized": float(np.mean((nrm(rec) - nrm(raw)) ** 2)),
                    "mse_raw": float(np.mean((rec - raw) ** 2))},
    }
    pick = rng.choice(len(val), min(prefix_chunks, len(val)), replace=False)
    real_fast = [cut[i] for i in range(len(cut)) if ok[i]]
    res["fast"]["undecodable"] = measure(fast_check(fast), real_fast, fast.num_ids, max_tokens, samples, rng,
                                         prefix_real=[real_fast[i % len(real_fast)] for i in pick])

    # OAT
    if oat is None:
        oat = OATTokenizer(OATConfig(action_dim=info["action_dim"], horizon=horizon)).eval()
        oat.set_normalizer(Normalizer.fit(train.actions))
        oat_src = "fresh (untrained, demos' normalizer)"
    else:
        oat_src = str(oat_path)
    real_oat = []
    with torch.no_grad():
        for j in range(0, len(val), 512):
            real_oat.extend(oat.tokenize(val.actions[j: j + 512]).tolist())
    with torch.no_grad():
        rec_o = torch.cat([oat.detokenize(torch.tensor(real_oat[j: j + 512]))
                           for j in range(0, len(real_oat), 512)]).numpy()
    res["oat"] = {"tokenizer": oat_src, "kind": oat.kind, "num_tokens": oat.num_tokens,
                  "codebook_size": oat.codebook_size,
                  "heldout": {"tokens": oat.num_tokens,
                              "mse_normalized": float(np.mean((nrm(rec_o) - nrm(raw)) ** 2)),
                              "mse_raw": float(np.mean((rec_o - raw) ** 2))},
                  "undecodable": measure(oat_check(oat), real_oat, oat.codebook_size, oat.num_tokens,
                                         samples, rng, prefix_real=[real_oat[i] for i in pick])}
    return res


def table(res):
    rows = ["| tokenizer | tokens/chunk | held-out MSE (norm.) | random | near-miss (replace/drop/insert) | prefixes |",
            "|---|---|---|---|---|---|"]
    for name in ("fast", "oat"):
        r = res[name]
        u = r["undecodable"]
        be = u["near_miss"]["by_edit"]
        toks = f"{r['heldout']['tokens_mean']:.1f}" if name == "fast" else str(r["heldout"]["tokens"])
        rows.append(f"| {name.upper()} | {toks} | {r['heldout']['mse_normalized']:.2e} | "
                    f"{u['random']['undecodable']:.1%} | {u['near_miss']['undecodable']:.1%} "
                    f"({be['replace']:.0%}/{be['drop']:.0%}/{be['insert']:.0%}) | "
                    f"{u['prefix']['undecodable']:.1%} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demos", required=True)
    p.add_argument("--oat", default=None, help="OAT tokenizer checkpoint (tokenizer.pt); default: fresh")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--prefix-chunks", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--horizon", type=int, default=32)
    p.add_argument("--max-fit-chunks", type=int, default=0, help="subsample FAST's BPE fit (0 = all)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = run_experiment(a.demos, a.oat, a.samples, a.prefix_chunks, a.seed, a.scale, a.vocab_size,
                         a.max_tokens, a.horizon, a.max_fit_chunks)
    print("undecodable fraction of token sequences")
    print(table(res))
    if a.out:
        from oat_edge.atomic import write_json
        write_json(a.out, res)
        print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
