"""Train the autoregressive token policy on top of a frozen tokenizer.

    python -m oat_edge.train.train_policy --demos runs/demos.npz \
        --tokenizer runs/tok_oat/tokenizer.pt --out runs/policy [--steps N] [--batch 128] \
        [--lr 1e-3] [--width 128] [--layers 2] [--device cpu|cuda] [--resume]
    torchrun --nproc_per_node 2 -m oat_edge.train.train_policy ...   (data parallel)
    python -m oat_edge.train.train_policy --demos runs/pixels.npz --cameras corner topview ...

With --cameras the policy sees: an ObservationEncoder (image encoder per camera + the state,
normalized inside it) feeds the AR policy (pixel_policy.py). Without it the policy is a state
policy, also on a dataset that has cameras. Frames stay uint8 on the training device, one array
per camera, and every batch is gathered there from row indices (no per-step host copies);
training crops each sample at a random position, inference crops the centre.

The tokenizer is frozen and keeps its own action normalizer; every training chunk is tokenized
once up front. The policy owns the observation normalizer (fitted on the training split).
Loss: teacher-forced cross-entropy over the K tokens. Writes out/policy.pt
(TokenPolicy.save with EMA weights), out/ckpt.pt (resumable), out/metrics.jsonl, out/config.json.
"""

from __future__ import annotations

import argparse
import math
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
def _train_config(args) -> PolicyTrainConfig:
    """The training loop's settings from the command line (state and camera policies alike)."""
    return PolicyTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                             schedule=args.schedule, weight_decay=args.weight_decay,
                             obs_lr_scale=args.obs_lr_scale, ckpt_every=args.ckpt_every,
                             eval_every=args.eval_every, log_every=args.log_every,
                             seed=args.seed, device=args.device, threads=args.threads,
                             progress=not args.no_progress)


def _run_info(args, pcfg, n_params, tok, cfg, info, **extra) -> dict:
    """What config.json records about a run: arguments, sizes, data, held-out episodes."""
    return {"args": vars(args), "policy_config": asdict(pcfg), "params": n_params, **extra,
            "tokenizer_kind": tok.checkpoint()["kind"], "train_config": asdict(cfg),
            "data": {k: v for k, v in info.items() if k not in ("train_episodes", "val_episodes")},
            "val_episodes": info["val_episodes"]}


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
    add_camera_flags(p)
    D.add_run_flags(p)
    args = p.parse_args(argv)
    apply_preset(args, PRESET_FLAGS)
    return args


def add_camera_flags(p) -> None:
    g = p.add_argument_group("camera policies")
    g.add_argument("--cameras", nargs="+", default=None,
                   help="train a policy that sees these cameras (names like corner, or the "
                        "dataset's keys; 'all' for every camera); default: a state policy")
    g.add_argument("--crop", nargs=2, type=int, default=None, metavar=("H", "W"),
                   help="crop of every camera frame (random in training, centre at inference; "
                        "default 7/8 of the frame)")
    g.add_argument("--vision", default="small", choices=("small", "resnet18"),
                   help="image encoder: the small CPU ResNet (83 k weights) or ResNet-18's layout")
    g.add_argument("--shared-vision", action="store_true",
                   help="one image encoder for every camera (equal crops)")
    g.add_argument("--aux-keys", nargs="+", default=None, metavar="KEY",
                   help="features the policy does not see but learns to predict from its frames "
                        "while training (e.g. observation.environment_state, robomimic's object): "
                        "supervision for the image encoder only, not part of the bundle")
    g.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the aux features' squared error (normalized) in the loss")


def main(argv=None):
    args = parse_args(argv)
    if args.aux_keys and not args.cameras:
        raise ValueError(f"--aux-keys {args.aux_keys}: expected with --cameras (they supervise the "
                         f"image encoder), given a state policy")
    if not (args.aux_weight > 0 and math.isfinite(args.aux_weight)):
        raise ValueError(f"--aux-weight: expected a finite number > 0, given {args.aux_weight}")
    D.check_out(args)  # before loading data and training, not after

    d = D.setup(args.device)
    tok = load_tokenizer(args.tokenizer)
    if args.cameras:
        train_pixel_policy(args, d, tok)
        D.teardown(d)
        return
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

    cfg = _train_config(args)
    run_info = _run_info(args, pcfg, n_params, tok, cfg, info)
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


# ----------------------------------------------------------------------------- camera policies

def _observation_spec(args, data, train, info):
    """The spec a pixel policy reads: the state (min-max normalization fitted on the training
    rows, or the dataset's declared range when it covers them), then every camera."""
    from oat_edge.sim.camera import IMAGE_PREFIX
    from oat_edge.train.observation import CameraInput, ObservationSpec, StateInput
    rows = torch.unique(train.obs_rows).numpy()
    norm = normalizer_for(torch.from_numpy(data.state[rows]),
                          info.get("stats_ranges", {}).get("obs"), "observation.state")
    cams = []
    for key, frames in data.frames.items():
        h, w = int(frames.shape[1]), int(frames.shape[2])
        crop = tuple(args.crop) if args.crop else None
        cams.append(CameraInput(key[len(IMAGE_PREFIX):], h, w, crop))
    state = StateInput(int(data.state.shape[1]), norm.scale.tolist(), norm.offset.tolist())
    return ObservationSpec(args.n_obs_steps, state, tuple(cams))


def train_pixel_policy(args, d, tok):
    """Train observation encoder + AR policy on a camera dataset; writes out/policy.pt
    (PixelTokenPolicy checkpoint + tasks, obs_layout, control_hz)."""
    from oat_edge.sim.camera import STATE_KEY
    from oat_edge.train.dataset import load_pixel_dataset
    from oat_edge.train.observation import ObservationEncoder, ObservationEncoderConfig
    from oat_edge.train.pixel_policy import EncodedPolicy, PixelTokenPolicy
    from oat_edge.train.vision import VisionConfig

    data_cfg = DataConfig(horizon=tok.horizon, n_obs_steps=args.n_obs_steps,
                          val_fraction=args.val_fraction, seed=args.seed,
                          min_episode_frames=args.min_episode_frames)
    cameras = None if args.cameras == ["all"] else args.cameras
    data, train, val, info = load_pixel_dataset(source_of(args), data_cfg, cameras, args.obs_keys,
                                                args.action_key, args.filter_key, args.aux_keys)
    if info["action_dim"] != tok.action_dim:
        raise ValueError(f"{source_of(args)}: action_dim: expected {tok.action_dim} (tokenizer), "
                         f"given {info['action_dim']}")
    spec = _observation_spec(args, data, train, info)
    vision = VisionConfig.resnet18() if args.vision == "resnet18" else VisionConfig()
    torch.manual_seed(args.seed)
    encoder = ObservationEncoder(spec, ObservationEncoderConfig(vision, args.shared_vision))
    pcfg = PolicyConfig(obs_dim=encoder.feature_dim, n_obs_steps=args.n_obs_steps,
                        codebook_size=tok.codebook_size, num_tokens=tok.num_tokens,
                        width=args.width, n_layers=args.layers, n_heads=args.heads,
                        dropout=args.dropout, n_action_steps=args.n_action_steps)
    aux_dim = 0 if data.aux is None else int(data.aux.shape[1])
    model = EncodedPolicy(encoder, ARPolicy(pcfg), aux_dim, args.aux_weight)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_head."))

    train_ids, val_ids = pretokenize(tok, train.actions), pretokenize(tok, val.actions)
    rows_train = train.obs_rows
    if d.world > 1:
        keep = torch.arange(d.rank, len(rows_train), d.world)
        rows_train, train_ids = rows_train[keep], train_ids[keep]
    if d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolutions once
        torch.set_float32_matmul_precision("high")
    # Every row's state and frames live on the device; a batch is gathered there by row index.
    state = torch.from_numpy(data.state).to(d.device)
    frames = {k: torch.from_numpy(v).to(d.device) for k, v in data.frames.items()}
    rows_train, y_train = rows_train.to(d.device), train_ids.to(d.device)
    rows_val, y_val = val.obs_rows[:1024].to(d.device), val_ids[:1024].to(d.device)
    aux = None
    if data.aux is not None:  # normalized like a state, fitted on the training rows
        aux_rows = torch.unique(train.obs_rows).numpy()
        aux_norm = normalizer_for(torch.from_numpy(data.aux[aux_rows]), None, "aux features")
        aux = aux_norm.normalize(torch.from_numpy(data.aux)).to(d.device)

    def batch(rows):
        return {STATE_KEY: state[rows], **{k: f[rows] for k, f in frames.items()}}

    def aux_of(rows):  # the scene at the newest observation step
        return None if aux is None else aux[rows[:, -1]]

    def loss_fn(m, idx):
        rows = rows_train[idx]
        return m.loss(batch(rows), y_train[idx], aux=aux_of(rows))

    def eval_fn(ema_model):
        if len(rows_val) == 0:
            return {}
        sums = {}
        for i in range(0, len(rows_val), 256):
            r, y = rows_val[i:i + 256], y_val[i:i + 256]
            lo, inf = ema_model.loss(batch(r), y, aux=aux_of(r))
            for k, v in (("loss", lo), ("acc", inf["acc"]), ("aux_mse", inf.get("aux_mse"))):
                if v is not None:
                    sums[k] = sums.get(k, 0.0) + float(v) * len(r)
        return {k: v / len(rows_val) for k, v in sums.items()}

    cfg = _train_config(args)
    run_info = _run_info(args, pcfg, n_params, tok, cfg, info, observation=spec.to_dict(),
                         encoder_config=encoder.cfg.to_dict())
    os.makedirs(args.out, exist_ok=True)
    D.discard_stale_result(os.path.join(args.out, "policy.pt"), d, args.resume)
    ema = D.fit(model, loss_fn, len(rows_train), cfg, args.out, d,
                param_groups=model.param_groups(args.obs_lr_scale), eval_fn=eval_fn,
                resume=args.resume, meta=run_info)
    if d.main:
        best = ema.model.cpu()
        ck = PixelTokenPolicy(tok, best.encoder, best.policy).checkpoint()
        ck.update(tasks=info["tasks"], obs_layout=info["obs_layout"])
        if "fps" in info:
            ck.update(control_hz=info["fps"])
        save_checkpoint(ck, os.path.join(args.out, "policy.pt"))
        write_json(os.path.join(args.out, "config.json"), run_info, indent=1)
        print(f"wrote {args.out}/policy.pt ({n_params / 1e6:.2f} M params, EMA weights, cameras "
              f"{info['cameras']}, tasks {info['tasks']})")


if __name__ == "__main__":
    main()
