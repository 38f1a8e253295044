"""Diffusion Policy baseline: a continuous action-chunk policy, the class most robot users run.

Same observation encoder as OAT's token policy (obs_in + obs_pos + obs_mlp, cross-attended by
every block through per-layer K/V computed once per act) and the same transformer block
(PolicyBlock, here with full self-attention over the H_a action positions instead of a causal
token cache). The network predicts the noise added to a normalized action chunk at a diffusion
timestep (added to every position as a sinusoidal embedding through an MLP).

Training: DDPM (diffusers DDPMScheduler, 100 steps, squared-cosine betas, epsilon prediction,
x0 clipped to [-1, 1]: Diffusion Policy's settings). Inference: DDIM with any number of steps
(diffusers DDIMScheduler, eta 0) from Gaussian noise. The ONNX runtime runner
(baselines/runners.py) repeats DDIM's arithmetic in numpy; a test pins it to diffusers'.

    python -m oat_edge.baselines.diffusion_policy --demos runs/demos.npz --out runs/dp [--steps N]
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oat_edge.atomic import write_json
from oat_edge.baselines.train_flags import add_policy_flags
from oat_edge.train import distributed as D
from oat_edge.train.checkpoint import load_checkpoint, save_checkpoint
from oat_edge.train.dataset import DataConfig, load_dataset
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.policy import PolicyBlock
from oat_edge.train.tokenizer import RMSNorm
from oat_edge.train.train_policy import RECIPE, param_groups

KIND = "diffusion_policy"


@dataclass
class DiffusionConfig:
    obs_dim: int
    action_dim: int = 4
    horizon: int = 32
    n_obs_steps: int = 2
    width: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1
    n_action_steps: int = 8
    train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    inference_steps: int = 10  # DDIM steps a runner uses unless told otherwise

    def __post_init__(self):
        for name in ("obs_dim", "action_dim", "horizon", "n_obs_steps", "width", "n_layers", "n_heads",
                     "mlp_ratio", "n_action_steps", "train_timesteps", "inference_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"DiffusionConfig.{name}: expected a positive int, got {v!r}")
        if self.width % self.n_heads:
            raise ValueError(f"DiffusionConfig.width: expected a multiple of n_heads={self.n_heads}, got {self.width}")
        if self.inference_steps > self.train_timesteps:
            raise ValueError(f"DiffusionConfig.inference_steps: expected <= train_timesteps="
                             f"{self.train_timesteps}, got {self.inference_steps}")

    @property
    def head_dim(self):
        return self.width // self.n_heads


def scheduler_config(cfg: DiffusionConfig) -> dict:
    """The diffusers scheduler settings (DDPM for training, DDIM for inference share them)."""
    return dict(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                clip_sample=True, prediction_type="epsilon")


def ddpm_scheduler(cfg: DiffusionConfig):
    from diffusers import DDPMScheduler
    return DDPMScheduler(**scheduler_config(cfg))


def ddim_scheduler(cfg: DiffusionConfig, steps: int):
    from diffusers import DDIMScheduler
    s = DDIMScheduler(**scheduler_config(cfg))
    s.set_timesteps(steps)
    return s


def timestep_embedding(t, dim: int):
    """Sinusoidal embedding of (float) timesteps t [B] -> [B, dim]."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    arg = t.to(torch.float32)[:, None] * freq[None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class DiffusionPolicy(nn.Module):
    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        # observation encoder: the same modules as ARPolicy's
        self.obs_in = nn.Linear(cfg.obs_dim, w)
        self.obs_pos = nn.Parameter(torch.randn(cfg.n_obs_steps, w) * 0.02)
        self.obs_mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.Mish(), nn.Linear(4 * w, w))
        self.act_in = nn.Linear(cfg.action_dim, w)
        self.act_pos = nn.Parameter(torch.randn(cfg.horizon, w) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.Mish(), nn.Linear(4 * w, w))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(PolicyBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(w)
        self.out = nn.Linear(w, cfg.action_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def prefill(self, obs_norm):
        """obs_norm [B,T,obs_dim] -> (mem_k, mem_v) each [L,B,H,T,Dh] (once per act)."""
        mem = self.obs_mlp(self.obs_in(obs_norm) + self.obs_pos)
        kvs = [blk.memory_kv(mem) for blk in self.blocks]
        return torch.stack([k for k, _ in kvs]), torch.stack([v for _, v in kvs])

    def denoise(self, sample, timestep, mem_k, mem_v):
        """sample [B,H,D] normalized noisy chunk, timestep [B] -> predicted noise [B,H,D]."""
        temb = self.time_mlp(timestep_embedding(timestep, self.cfg.width))
        x = self.drop(self.act_in(sample) + self.act_pos + temb[:, None])
        for layer, blk in enumerate(self.blocks):
            x, _, _ = blk(x, lambda k, v: (k, v), None, mem_k[layer], mem_v[layer])
        return self.out(self.norm(x))

    def loss(self, obs_norm, actions_norm, scheduler, generator=None):
        """DDPM noise-prediction MSE at uniformly drawn timesteps."""
        B = actions_norm.shape[0]
        noise = torch.randn(actions_norm.shape, generator=generator, device=actions_norm.device)
        t = torch.randint(0, self.cfg.train_timesteps, (B,), generator=generator, device=actions_norm.device)
        noisy = scheduler.add_noise(actions_norm, noise, t)
        mem_k, mem_v = self.prefill(obs_norm)
        loss = F.mse_loss(self.denoise(noisy, t, mem_k, mem_v), noise)
        return loss, {"mse": loss.detach()}


class DiffusionChunkPolicy(nn.Module):
    """Network + observation and action normalizers: raw obs in, raw action chunk out."""

    kind = KIND

    def __init__(self, net: DiffusionPolicy, obs_normalizer: Normalizer, action_normalizer: Normalizer):
        super().__init__()
        c = net.cfg
        if obs_normalizer.dim != c.obs_dim or action_normalizer.dim != c.action_dim:
            raise ValueError(f"normalizers: expected dims obs {c.obs_dim} / action {c.action_dim}, got "
                             f"{obs_normalizer.dim} / {action_normalizer.dim}")
        self.net, self.obs_normalizer, self.action_normalizer = net, obs_normalizer, action_normalizer

    @torch.no_grad()
    def predict(self, obs_raw, steps=None, noise=None, seed=0):
        """obs_raw [B, T, obs_dim] -> raw actions [B, H, D] by DDIM (diffusers) from `noise`
        ([B, H, D], normalized units) or from seeded Gaussian noise."""
        c = self.net.cfg
        obs = torch.as_tensor(np.asarray(obs_raw), dtype=torch.float32)
        B = obs.shape[0]
        x = (torch.as_tensor(np.asarray(noise), dtype=torch.float32) if noise is not None else
             torch.randn(B, c.horizon, c.action_dim, generator=torch.Generator().manual_seed(seed)))
        self.net.eval()
        sched = ddim_scheduler(c, steps or c.inference_steps)
        mem_k, mem_v = self.net.prefill(self.obs_normalizer.normalize(obs))
        for t in sched.timesteps:
            eps = self.net.denoise(x, torch.full((B,), int(t), dtype=torch.long), mem_k, mem_v)
            x = sched.step(eps, t, x).prev_sample
        return self.action_normalizer.unnormalize(x.clamp(-1.0, 1.0))

    def checkpoint(self):
        return {"kind": KIND, "config": asdict(self.net.cfg), "state": self.net.state_dict(),
                "obs_normalizer": self.obs_normalizer.to_dict(),
                "action_normalizer": self.action_normalizer.to_dict()}

    @classmethod
    def from_checkpoint(cls, ck):
        if ck.get("kind") != KIND:
            raise ValueError(f"checkpoint kind: expected {KIND!r}, got {ck.get('kind')!r}")
        net = DiffusionPolicy(DiffusionConfig(**ck["config"]))
        net.load_state_dict(ck["state"])
        return cls(net, Normalizer.from_dict(ck["obs_normalizer"]), Normalizer.from_dict(ck["action_normalizer"]))

    @classmethod
    def load(cls, path):
        return cls.from_checkpoint(load_checkpoint(path))


def main(argv=None):
    p = argparse.ArgumentParser(description="train the Diffusion Policy baseline (DDPM, continuous chunks)")
    add_policy_flags(p)
    p.add_argument("--train-timesteps", type=int, default=100)
    p.add_argument("--inference-steps", type=int, default=10, help="DDIM steps recorded as the default")
    D.add_run_flags(p)
    args = p.parse_args(argv)

    d = D.setup(args.device)
    train, val, info = load_dataset(args.demos, DataConfig(horizon=args.horizon, n_obs_steps=args.n_obs_steps,
                                                           val_fraction=args.val_fraction, seed=args.seed))
    obs_norm, act_norm = Normalizer.fit(train.obs), Normalizer.fit(train.actions)
    if d.world > 1:
        train = train.shard(d.rank, d.world)
    x_train = obs_norm.normalize(train.obs).to(d.device)
    a_train = act_norm.normalize(train.actions).clamp(-1, 1).to(d.device)
    x_val = obs_norm.normalize(val.obs[:2048]).to(d.device)
    a_val = act_norm.normalize(val.actions[:2048]).clamp(-1, 1).to(d.device)

    torch.manual_seed(args.seed)
    cfg = DiffusionConfig(obs_dim=info["obs_dim"], action_dim=info["action_dim"], horizon=args.horizon,
                          n_obs_steps=args.n_obs_steps, width=args.width, n_layers=args.layers,
                          n_heads=args.heads, dropout=args.dropout, n_action_steps=args.n_action_steps,
                          train_timesteps=args.train_timesteps, inference_steps=args.inference_steps)
    net = DiffusionPolicy(cfg)
    sched = ddpm_scheduler(cfg)
    n_params = sum(q.numel() for q in net.parameters())

    def loss_fn(model, idx):
        return model.loss(x_train[idx], a_train[idx], sched)

    def eval_fn(ema_model):
        if len(x_val) == 0:
            return {}
        g = torch.Generator(device=d.device).manual_seed(0)  # the same noise at every evaluation
        loss, _ = ema_model.loss(x_val, a_val, sched, generator=g)
        return {"loss": float(loss)}

    tcfg = D.TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                         ckpt_every=args.ckpt_every, eval_every=args.eval_every, log_every=args.log_every,
                         seed=args.seed, device=args.device, threads=args.threads,
                         progress=not args.no_progress)
    run_info = {"args": vars(args), "config": asdict(cfg), "params": n_params, "train_config": asdict(tcfg),
                "scheduler": scheduler_config(cfg),
                "data": {k: v for k, v in info.items() if k not in ("train_episodes", "val_episodes")}}
    os.makedirs(args.out, exist_ok=True)
    ema = D.fit(net, loss_fn, len(x_train), tcfg, args.out, d,
                param_groups=param_groups(net, RECIPE["obs_lr_scale"]), eval_fn=eval_fn,
                resume=args.resume, meta=run_info)
    if d.main:
        ck = DiffusionChunkPolicy(ema.model.cpu(), obs_norm, act_norm).checkpoint()
        ck.update(tasks=info["tasks"], obs_layout=info["obs_layout"])
        save_checkpoint(ck, os.path.join(args.out, "policy.pt"))
        write_json(os.path.join(args.out, "config.json"), run_info, indent=1)
        print(f"wrote {args.out}/policy.pt ({n_params / 1e6:.2f} M params, EMA weights)")
    D.teardown(d)


if __name__ == "__main__":
    main()
