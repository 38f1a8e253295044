"""Train the autoregressive token policy on top of a frozen tokenizer.

    python -m oat_edge.train.train_policy --demos runs/demos.npz \
        --tokenizer runs/tok_oat/tokenizer.pt --out runs/policy [--steps N] [--batch 128] \
        [--lr 1e-3] [--width 128] [--layers 2] [--device cpu|cuda] [--resume]
    torchrun --nproc_per_node 2 -m oat_edge.train.train_policy ...   (data parallel)

The tokenizer is frozen and keeps its own action normalizer; every training chunk is tokenized
once up front. The policy owns the observation normalizer (fitted on the training split).
Loss: teacher-forced cross-entropy over the K tokens. Writes out/policy.pt
(TokenPolicy.save with EMA weights), out/ckpt.pt (resumable), out/metrics.jsonl, out/config.json.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass

import torch

from oat_edge.atomic import write_json
from oat_edge.train import distributed as D
from oat_edge.train.checkpoint import save_checkpoint
from oat_edge.train.dataset import DataConfig, add_source_flags, load_dataset, normalizer_for, source_of
from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
from oat_edge.train.presets import add_preset_flag, apply_preset, default_help, value
from oat_edge.train.train_tokenizer import load_tokenizer


@dataclass
class PolicyTrainConfig(D.TrainConfig):
    """Policy training defaults: the CPU recipe's (docs/DATA.md; presets.py has the paper's),
    smaller and faster-learning than the paper's 256-wide reference."""
    steps: int = 5000
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 100
    obs_lr_scale: float = 1.0  # learning-rate factor of the observation encoder


# argparse dest -> (the config field its default comes from, what it sets)
PRESET_FLAGS = {
    "steps": (PolicyTrainConfig, "steps", "optimizer steps"),
    "batch": (PolicyTrainConfig, "batch", "global batch (split across ranks)"),
    "lr": (PolicyTrainConfig, "lr", "peak learning rate"),
    "warmup": (PolicyTrainConfig, "warmup", "linear warm-up steps"),
    "obs_lr_scale": (PolicyTrainConfig, "obs_lr_scale",
                     "learning-rate factor of the observation encoder"),
    "width": (PolicyConfig, "width", "model width"),
    "layers": (PolicyConfig, "n_layers", "transformer layers"),
    "heads": (PolicyConfig, "n_heads", "attention heads"),
    "dropout": (PolicyConfig, "dropout", "dropout"),
    "n_action_steps": (PolicyConfig, "n_action_steps",
                       "receding horizon recorded in the bundle: steps of each chunk executed "
                       "before replanning"),
}
# The cpu preset under the flag names, for trainers that train the same way.
RECIPE = {dest: value("cpu", cls, field) for dest, (cls, field, _) in PRESET_FLAGS.items()}


@torch.no_grad()
def pretokenize(tok, actions_raw: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """[M, H, D] raw chunks -> [M, K] int64 ids (frozen tokenizer, eval mode)."""
    tok.eval()
    if len(actions_raw) == 0:
        return torch.zeros(0, tok.num_tokens, dtype=torch.int64)
    return torch.cat([tok.tokenize(actions_raw[i:i + batch])
                      for i in range(0, len(actions_raw), batch)])


def param_groups(policy: ARPolicy, obs_lr_scale: float):
    """Observation encoder in its own group (the reference trains it at a lower lr)."""
    obs, rest = [], []
    for name, p in policy.named_parameters():
        (obs if name.split(".")[0] in ("obs_in", "obs_pos", "obs_mlp") else rest).append(p)
    return [{"params": rest, "lr_scale": 1.0}, {"params": obs, "lr_scale": obs_lr_scale}]


def parse_args(argv=None):
    """The command line, with every size the user left out taken from --preset."""
    p = argparse.ArgumentParser(description="train the AR token policy (tokenizer frozen)")
    add_source_flags(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer.pt from train_tokenizer")
    p.add_argument("--out", required=True)
    add_preset_flag(p)
    floats = ("lr", "obs_lr_scale", "dropout")
    for dest, (cls, field, what) in PRESET_FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), type=float if dest in floats else int,
                       default=None, help=default_help(cls, field, what))
    p.add_argument("--schedule", default=PolicyTrainConfig.schedule,
                   choices=("cosine", "constant"))
    p.add_argument("--weight-decay", type=float, default=PolicyTrainConfig.weight_decay)
    p.add_argument("--n-obs-steps", type=int, default=DataConfig.n_obs_steps)
    D.add_run_flags(p)
    args = p.parse_args(argv)
    apply_preset(args, PRESET_FLAGS)
    return args


def main(argv=None):
    args = parse_args(argv)
    D.check_out(args)  # before loading data and training, not after

    d = D.setup(args.device)
    tok = load_tokenizer(args.tokenizer)
    data_cfg = DataConfig(horizon=tok.horizon, n_obs_steps=args.n_obs_steps,
                          val_fraction=args.val_fraction, seed=args.seed,
                          min_episode_frames=args.min_episode_frames)
    train, val, info = load_dataset(source_of(args), data_cfg, args.obs_keys, args.action_key,
                                    filter_key=args.filter_key)
    if info["action_dim"] != tok.action_dim:
        raise ValueError(f"{source_of(args)}: action_dim: expected {tok.action_dim} (tokenizer), "
                         f"given {info['action_dim']}")
    # the policy owns the observation normalizer
    obs_norm = normalizer_for(train.obs, info.get("stats_ranges", {}).get("obs"), "observation")
    train_ids, val_ids = pretokenize(tok, train.actions), pretokenize(tok, val.actions)
    if d.world > 1:
        keep = torch.arange(d.rank, len(train), d.world)
        train, train_ids = train.subset(keep), train_ids[keep]
    x_train = obs_norm.normalize(train.obs).to(d.device)
    y_train = train_ids.to(d.device)
    x_val = obs_norm.normalize(val.obs[:2048]).to(d.device)
    y_val = val_ids[:2048].to(d.device)

    torch.manual_seed(args.seed)
    pcfg = PolicyConfig(obs_dim=info["obs_dim"], n_obs_steps=args.n_obs_steps,
                        codebook_size=tok.codebook_size, num_tokens=tok.num_tokens,
                        width=args.width, n_layers=args.layers, n_heads=args.heads,
                        dropout=args.dropout, n_action_steps=args.n_action_steps)
    policy = ARPolicy(pcfg)
    n_params = sum(p.numel() for p in policy.parameters())

    def loss_fn(model, idx):
        return model.loss(x_train[idx], y_train[idx])

    def eval_fn(ema_model):
        if len(x_val) == 0:
            return {}
        loss, inf = ema_model.loss(x_val, y_val)
        return {"loss": float(loss), "acc": float(inf["acc"])}

    cfg = PolicyTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                            schedule=args.schedule, weight_decay=args.weight_decay,
                            obs_lr_scale=args.obs_lr_scale, ckpt_every=args.ckpt_every,
                            eval_every=args.eval_every, log_every=args.log_every,
                            seed=args.seed, device=args.device, threads=args.threads,
                            progress=not args.no_progress)
    run_info = {"args": vars(args), "policy_config": asdict(pcfg), "params": n_params,
                "tokenizer_kind": tok.checkpoint()["kind"], "train_config": asdict(cfg),
                "data": {k: v for k, v in info.items()
                         if k not in ("train_episodes", "val_episodes")},
                "val_episodes": info["val_episodes"]}
    os.makedirs(args.out, exist_ok=True)
    D.discard_stale_result(os.path.join(args.out, "policy.pt"), d, args.resume)
    ema = D.fit(policy, loss_fn, len(x_train), cfg, args.out, d,
                param_groups=param_groups(policy, args.obs_lr_scale), eval_fn=eval_fn,
                resume=args.resume, meta=run_info)
    if d.main:
        final = TokenPolicy(tok, ema.model.cpu(), obs_norm)
        ck = final.checkpoint()  # == TokenPolicy.save, plus what the exporter's manifest needs
        ck.update(tasks=info["tasks"], obs_layout=info["obs_layout"])
        if "fps" in info:  # the control rate the demonstrations were recorded at
            ck.update(control_hz=info["fps"])
        save_checkpoint(ck, os.path.join(args.out, "policy.pt"))
        write_json(os.path.join(args.out, "config.json"), run_info, indent=1)
        print(f"wrote {args.out}/policy.pt ({n_params / 1e6:.2f} M params, EMA weights, "
              f"tasks {info['tasks']})")
    D.teardown(d)


if __name__ == "__main__":
    main()
