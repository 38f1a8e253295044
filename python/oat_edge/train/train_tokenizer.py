"""Train an action tokenizer on Meta-World demos.

    python -m oat_edge.train.train_tokenizer --demos runs/demos.npz --out runs/tok_oat \
        [--variant oat|oatx|oat-nocausal|bin] [--steps N] [--batch 128] [--lr 1e-3] \
        [--width 128] [--device cpu|cuda] [--resume]
    torchrun --nproc_per_node 2 -m oat_edge.train.train_tokenizer ...   (data parallel)

Writes out/tokenizer.pt (EMA weights + the tokenizer's own action normalizer), out/ckpt.pt
(resumable), out/metrics.jsonl and out/config.json. The action normalizer is fitted on the
training split only; the held-out split (by episode) is the one
measure/tokenizer_report.py evaluates.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass

import torch

from oat_edge.atomic import write_json
from oat_edge.train import distributed as D
from oat_edge.train.checkpoint import load_checkpoint
from oat_edge.train.dataset import DataConfig, add_source_flags, load_dataset, normalizer_for, source_of
from oat_edge.train.presets import add_preset_flag, apply_preset, default_help, value
from oat_edge.train.tokenizer import KEEP_K, OATConfig

VARIANTS = ("oat", "oatx", "oat-nocausal", "bin")


@dataclass
class TokenizerTrainConfig(D.TrainConfig):
    """Tokenizer training defaults: the CPU recipe's (docs/DATA.md; presets.py has the paper's).
    The paper's 256-wide reference is ~6 M parameters and too slow for 30 minutes on 2 cores;
    the OATConfig defaults and these meet the reconstruction targets in that budget."""
    steps: int = 6000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100


# argparse dest -> (the config field its default comes from, what it sets)
PRESET_FLAGS = {
    "steps": (TokenizerTrainConfig, "steps", "optimizer steps"),
    "batch": (TokenizerTrainConfig, "batch", "global batch (split across ranks)"),
    "lr": (TokenizerTrainConfig, "lr", "peak learning rate"),
    "warmup": (TokenizerTrainConfig, "warmup", "linear warm-up steps"),
    "width": (OATConfig, "enc_width", "encoder and decoder width"),
    "enc_depth": (OATConfig, "enc_depth", "encoder layers"),
    "dec_depth": (OATConfig, "dec_depth", "decoder layers"),
    "heads": (OATConfig, "enc_heads", "attention heads"),
    "dropout": (OATConfig, "dropout", "dropout"),
    "keep_k": (OATConfig, "keep_k", "nested-dropout prefix-length distribution"),
    "num_tokens": (OATConfig, "num_tokens", "tokens per chunk K"),
    "horizon": (OATConfig, "horizon", "actions per chunk H_a"),
}
# The cpu preset under the flag names, for trainers that build the same tokenizer.
RECIPE = {dest: value("cpu", cls, field) for dest, (cls, field, _) in PRESET_FLAGS.items()}


def build_tokenizer(variant: str, action_dim: int, horizon: int, width: int, enc_depth: int,
                    dec_depth: int, heads: int, ff: int, dropout: float,
                    num_tokens: int = OATConfig.num_tokens, fsq_levels=OATConfig.fsq_levels,
                    bins: int = 256, keep_k: str = OATConfig.keep_k):
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, given {variant!r}")
    if variant == "bin":
        from oat_edge.train.bin_tokenizer import BinTokenizer
        return BinTokenizer(action_dim=action_dim, horizon=horizon, bins=bins)
    from oat_edge.train.tokenizer import OATTokenizer
    cfg = OATConfig(action_dim=action_dim, horizon=horizon, num_tokens=num_tokens,
                    fsq_levels=tuple(fsq_levels), enc_width=width, enc_depth=enc_depth,
                    enc_heads=heads, dec_width=width, dec_depth=dec_depth, dec_heads=heads,
                    dec_ff=ff, dropout=dropout,
                    keep_k=keep_k,
                    nested_dropout=(variant != "oatx"),
                    causal_registers=(variant != "oat-nocausal"))
    return OATTokenizer(cfg)


def load_tokenizer(path, map_location="cpu"):
    """Load any tokenizer checkpoint written by this script (OAT variants or Bin)."""
    from oat_edge.train.policy import tokenizer_from_checkpoint
    ck = load_checkpoint(path, map_location, what="tokenizer checkpoint")
    if not isinstance(ck, dict) or "kind" not in ck:
        raise ValueError(f"{path}: expected a tokenizer checkpoint (dict with 'kind'), "
                         f"given {type(ck).__name__} without 'kind'")
    return tokenizer_from_checkpoint(ck).eval()


@torch.no_grad()
def recon_mse_by_k(tok, actions_raw: torch.Tensor, ks=None, batch: int = 1024):
    """Held-out reconstruction MSE per prefix length k, in normalized and raw units.
    Returns {k: (mse_norm, mse_raw)}. Uses tokenize -> detokenize(ids, k) (clamped output)."""
    tok.eval()
    ks = ks or list(range(1, tok.num_tokens + 1))
    sums = {k: [0.0, 0.0] for k in ks}
    n = 0
    for i in range(0, len(actions_raw), batch):
        a = actions_raw[i:i + batch]
        ids = tok.tokenize(a)
        a_n = tok.normalizer.normalize(a)
        for k in ks:
            r = tok.detokenize(ids[:, :k], k)
            sums[k][0] += float(((tok.normalizer.normalize(r) - a_n) ** 2).mean()) * len(a)
            sums[k][1] += float(((r - a) ** 2).mean()) * len(a)
        n += len(a)
    return {k: (s[0] / n, s[1] / n) for k, s in sums.items()}


def parse_args(argv=None):
    """The command line, with every size the user left out taken from --preset."""
    p = argparse.ArgumentParser(description="train an action tokenizer (OAT/OATX/Bin)")
    add_source_flags(p)
    p.add_argument("--out", required=True)
    p.add_argument("--variant", default="oat", choices=VARIANTS)
    add_preset_flag(p)
    types = {"lr": float, "dropout": float, "keep_k": str}
    for dest, (cls, field, what) in PRESET_FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), type=types.get(dest, int), default=None,
                       choices=KEEP_K if dest == "keep_k" else None,
                       help=default_help(cls, field, what))
    p.add_argument("--schedule", default=TokenizerTrainConfig.schedule,
                   choices=("cosine", "constant"))
    p.add_argument("--ff", type=int, default=None, help="decoder MLP width (default 4*width)")
    p.add_argument("--bins", type=int, default=256, help="bins per dimension (--variant bin)")
    p.add_argument("--n-obs-steps", type=int, default=DataConfig.n_obs_steps)
    D.add_run_flags(p)
    args = p.parse_args(argv)
    apply_preset(args, PRESET_FLAGS)
    return args


def main(argv=None):
    args = parse_args(argv)
    D.check_out(args)  # before loading data and training, not after

    d = D.setup(args.device)
    data_cfg = DataConfig(horizon=args.horizon, n_obs_steps=args.n_obs_steps,
                          val_fraction=args.val_fraction, seed=args.seed,
                          min_episode_frames=args.min_episode_frames)
    train, val, info = load_dataset(source_of(args), data_cfg, args.obs_keys, args.action_key,
                                    filter_key=args.filter_key, actions_only=True)
    torch.manual_seed(args.seed)  # same init on every rank (and broadcast anyway)
    ff = args.ff or 4 * args.width
    tok = build_tokenizer(args.variant, info["action_dim"], args.horizon, args.width,
                          args.enc_depth, args.dec_depth, args.heads, ff, args.dropout,
                          num_tokens=args.num_tokens, bins=args.bins, keep_k=args.keep_k)
    # the tokenizer owns its normalizer
    tok.set_normalizer(normalizer_for(train.actions,
                                      info.get("stats_ranges", {}).get("action"), "action"))
    os.makedirs(args.out, exist_ok=True)
    run_info = {"variant": args.variant, "args": vars(args), "data": {
        k: v for k, v in info.items() if k not in ("train_episodes", "val_episodes")},
        "val_episodes": info["val_episodes"]}

    n_params = sum(p.numel() for p in tok.parameters() if p.requires_grad)
    if args.variant == "bin" or n_params == 0:
        # nothing to learn: the bin grid is fixed once the normalizer is fitted
        if d.main:
            tok.save(os.path.join(args.out, "tokenizer.pt"))
            write_json(os.path.join(args.out, "config.json"), run_info, indent=1)
            print(f"wrote {args.out}/tokenizer.pt (bin tokenizer, no training needed)")
        D.teardown(d)
        return

    cfg = TokenizerTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr,
                               warmup=args.warmup, schedule=args.schedule,
                               ckpt_every=args.ckpt_every, eval_every=args.eval_every,
                               log_every=args.log_every, seed=args.seed, device=args.device,
                               threads=args.threads, progress=not args.no_progress)
    if d.world > 1:
        train = train.shard(d.rank, d.world)
    train_actions = train.actions.to(d.device)
    val_actions = val.actions[:2048].to(d.device)
    K = tok.num_tokens

    def loss_fn(model, idx):
        loss, inf = model.loss(train_actions[idx])
        return loss, {k: v for k, v in inf.items() if k != "ids"}

    def eval_fn(ema_model):
        if len(val_actions) == 0:
            return {}
        r = recon_mse_by_k(ema_model, val_actions, ks=[1, K])
        return {"mse_k1": r[1][0], "mse": r[K][0]}

    run_info["params"] = n_params
    run_info["train_config"] = asdict(cfg)
    D.discard_stale_result(os.path.join(args.out, "tokenizer.pt"), d, args.resume)
    ema = D.fit(tok, loss_fn, len(train), cfg, args.out, d, eval_fn=eval_fn,
                resume=args.resume, meta=run_info)
    if d.main:
        ema.model.cpu().save(os.path.join(args.out, "tokenizer.pt"))  # EMA weights
        write_json(os.path.join(args.out, "config.json"), run_info, indent=1)
        print(f"wrote {args.out}/tokenizer.pt ({n_params / 1e6:.2f} M params, EMA weights)")
    D.teardown(d)


if __name__ == "__main__":
    main()
