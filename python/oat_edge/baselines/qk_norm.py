"""Which QK-norm for the OAT encoder: the reference implementation's non-affine LayerNorm, or
our RMSNorm with a learned gain? Measured, not assumed.

The LayerNorm tokenizer is trained with exactly the arguments of a finished `train-tokenizer`
run (data, seed, recipe, step count); only the encoder's q/k normalization differs. The figure of merit is held-out
reconstruction MSE per prefix length k (normalized units), the same measure as the tokenizer
report.

    oat-edge train-tokenizer --demos runs/demos.npz --out runs/tok          # RMSNorm (ours)
    python -m oat_edge.baselines.qk_norm --demos runs/demos.npz --like runs/tok --out runs/qk_ln
    python -m oat_edge.baselines.qk_norm --report runs/qk_ln                  # the table
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn as nn

from oat_edge.atomic import write_json
from oat_edge.train import distributed as D
from oat_edge.train.dataset import DataConfig, load_dataset
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.train_tokenizer import build_tokenizer, recon_mse_by_k


def use_layernorm_qk_norm(tok) -> int:
    """Replace every encoder block's q/k RMSNorm (learned gain) by a LayerNorm without affine
    parameters, as in the reference. Returns the number of modules replaced."""
    n = 0
    for blk in tok.encoder.blocks:
        for name in ("q_norm", "k_norm"):
            dim = getattr(blk, name).weight.shape[0]
            setattr(blk, name, nn.LayerNorm(dim, elementwise_affine=False))
            n += 1
    return n


def _recipe(like: str) -> dict:
    """The arguments of a finished `train-tokenizer` run (its config.json)."""
    path = os.path.join(like, "config.json")
    try:
        with open(path) as f:
            a = json.load(f)["args"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"qk_norm: --like {like!r}: expected a train-tokenizer run directory with "
                         f"config.json, could not read it ({exc})") from None
    if a.get("variant", "oat") != "oat":
        raise SystemExit(f"qk_norm: --like {like!r}: expected an OAT tokenizer run, got variant {a['variant']!r}")
    return a


def train(args) -> dict:
    """Train the LayerNorm-QK-norm tokenizer with exactly the arguments of the --like run
    (RMSNorm, trained by train-tokenizer), then measure both on the same held-out split."""
    from oat_edge.train.train_tokenizer import load_tokenizer
    a = _recipe(args.like)
    d = D.setup(args.device)
    train_set, val, info = load_dataset(args.demos, DataConfig(horizon=a["horizon"], seed=a["seed"],
                                                               val_fraction=a["val_fraction"]))
    torch.manual_seed(a["seed"])
    tok = build_tokenizer("oat", info["action_dim"], a["horizon"], a["width"], a["enc_depth"], a["dec_depth"],
                          a["heads"], a.get("ff") or 4 * a["width"], a["dropout"], num_tokens=a["num_tokens"],
                          keep_k=a["keep_k"])
    tok.set_normalizer(Normalizer.fit(train_set.actions))
    replaced = use_layernorm_qk_norm(tok)
    actions = train_set.actions.to(d.device)

    def loss_fn(model, idx):
        loss, inf = model.loss(actions[idx])
        return loss, {k: v for k, v in inf.items() if k != "ids"}

    cfg = D.TrainConfig(steps=a["steps"], batch=a["batch"], lr=a["lr"], warmup=a["warmup"],
                        schedule=a.get("schedule", "cosine"), seed=a["seed"], device=args.device,
                        threads=args.threads, ckpt_every=a["steps"], eval_every=a["steps"],
                        progress=not args.no_progress)
    ema = D.fit(tok, loss_fn, len(train_set), cfg, args.out, d)
    res = {}
    if d.main:
        ref = load_tokenizer(os.path.join(args.like, "tokenizer.pt"))
        runs = {"rmsnorm": recon_mse_by_k(ref, val.actions), "layernorm": recon_mse_by_k(ema.model.cpu(), val.actions)}
        res = {"like": args.like, "modules_replaced": replaced, "steps": a["steps"], "seed": a["seed"],
               "val_chunks": len(val),
               "mse_norm_by_k": {q: {str(k): v[0] for k, v in m.items()} for q, m in runs.items()}}
        write_json(os.path.join(args.out, "qk_norm.json"), res, indent=1)
        for q, m in runs.items():
            print(f"{q}: held-out MSE k=1 {m[1][0]:.4f} k=8 {m[max(m)][0]:.4f}")
    D.teardown(d)
    return res


def report(run_dir) -> str:
    with open(os.path.join(run_dir, "qk_norm.json")) as f:
        r = json.load(f)
    m = r["mse_norm_by_k"]
    ks = list(m["rmsnorm"])
    out = ["| encoder QK-norm | " + " | ".join(f"k={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for q, label in (("rmsnorm", "RMSNorm, learned gain (ours)"), ("layernorm", "LayerNorm, no affine (reference)")):
        out.append(f"| {label} | " + " | ".join(f"{m[q][k]:.4f}" for k in ks) + " |")
    return "\n".join(out) + (f"\n\nheld-out reconstruction MSE (normalized units) per prefix length k, "
                             f"{r['val_chunks']} chunks; both trained {r['steps']} steps, seed {r['seed']}\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="OAT encoder QK-norm: LayerNorm (reference) vs RMSNorm (ours)")
    p.add_argument("--report", metavar="RUN_DIR", help="print the table of a finished run")
    p.add_argument("--demos")
    p.add_argument("--like", help="train-tokenizer run (RMSNorm) whose arguments to repeat")
    p.add_argument("--out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report), end="")
        return 0
    if not (args.demos and args.like and args.out):
        p.error("--demos, --like and --out are required to train (or pass --report RUN_DIR)")
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
