"""Autoregressive token policy over OAT tokens, with the exact step/prefill interface that is
exported to ONNX (DESIGN.md §5): the trained module *is* the exported module.

obs [B,T,obs_dim] --prefill--> per-layer cross-attn K/V  (once per act)
<BOS>, t0, t1, ... --step (fixed K-slot self-attn cache)--> logits over codebook + BOS
"""
import secrets
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import sampling
from .bin_tokenizer import BinTokenizer
from .checkpoint import load_checkpoint, save_checkpoint
from .normalizer import Normalizer
from .tokenizer import NEG_INF, OATTokenizer, RMSNorm, _heads, _merge, attend, causal_mask


@dataclass
class PolicyConfig:
    """Policy sizes. The defaults are the CPU recipe's (presets.py has the paper's)."""
    obs_dim: int
    n_obs_steps: int = 2
    codebook_size: int = 1000
    num_tokens: int = 8
    width: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1
    # Receding horizon recorded in the bundle (training does not depend on it). On the Meta-World
    # recipe (docs/eval) executing 8 of the 32 predicted steps before replanning gave 82-90%
    # success at k=8 vs 72-76% with 16.
    n_action_steps: int = 8

    def __post_init__(self):
        for name in ("obs_dim", "n_obs_steps", "codebook_size", "num_tokens", "width", "n_layers",
                     "n_heads", "mlp_ratio", "n_action_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PolicyConfig.{name}: expected a positive int, got {v!r}")
        if self.width % self.n_heads:
            raise ValueError(f"PolicyConfig.width: expected a multiple of n_heads={self.n_heads}, got {self.width}")

    @property
    def vocab_size(self):
        return self.codebook_size + 1

    @property
    def bos_id(self):
        return self.codebook_size

    @property
    def head_dim(self):
        return self.width // self.n_heads


class PolicyBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w, self.n_heads, self.dropout = cfg.width, cfg.n_heads, cfg.dropout
        self.norm1 = RMSNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj1 = nn.Linear(w, w)
        self.norm2 = RMSNorm(w)
        self.q = nn.Linear(w, w)
        self.kv = nn.Linear(w, 2 * w)  # applied to the obs memory in prefill
        self.proj2 = nn.Linear(w, w)
        self.norm3 = RMSNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, cfg.mlp_ratio * w), nn.GELU(),
                                 nn.Linear(cfg.mlp_ratio * w, w), nn.Dropout(cfg.dropout))
        self.drop = nn.Dropout(cfg.dropout)

    def memory_kv(self, mem):
        k, v = self.kv(mem).split(mem.shape[-1], dim=-1)
        return _heads(k, self.n_heads), _heads(v, self.n_heads)

    def forward(self, x, self_kv, self_mask, mem_k, mem_v):
        """x [B,T,w]; self_kv(k, v) -> full keys/values given this block's new k, v [B,H,T,Dh].
        Returns (x, new_k, new_v)."""
        H = self.n_heads
        q, k, v = self.qkv(self.norm1(x)).split(x.shape[-1], dim=-1)
        k, v = _heads(k, H), _heads(v, H)
        kk, vv = self_kv(k, v)
        y = attend(_heads(q, H), kk, vv, self_mask, self.dropout, self.training)
        x = x + self.drop(self.proj1(_merge(y)))
        y = attend(_heads(self.q(self.norm2(x)), H), mem_k, mem_v, None, self.dropout, self.training)
        x = x + self.drop(self.proj2(_merge(y)))
        return x + self.mlp(self.norm3(x)), k, v

    def step(self, x, past_k, past_v, mask, mem_k, mem_v):
        """forward() for one position, written for a small exported graph: x [B,w] stays 2-D (each
        Linear is one Gemm), heads are one constant-target Reshape (no transposes when T=1), the
        1/sqrt(Dh) scale rides on q, and the per-layer cache slices keep their leading layer axis of
        1 (no Squeeze going in, no Unsqueeze coming out). Inference only (no dropout).
        past_k/v [1,B,H,K,Dh], mem_k/v [1,B,H,T,Dh], mask [1,K+1] -> (x, new_k/new_v [1,B,H,1,Dh])."""
        H, w = self.n_heads, int(x.shape[-1])  # int(): a constant in the traced graph
        Dh = w // H
        # [B, 3w] = [q | k | v] -> [1, B, 3H, 1, Dh]: one Reshape, then one Split into the three
        q, k, v = self.qkv(self.norm1(x)).reshape(1, -1, 3 * H, 1, Dh).split(H, dim=2)
        q = q * (1.0 / Dh**0.5)
        att = F.softmax(q @ torch.cat([past_k, k], 3).transpose(-2, -1) + mask, dim=-1)
        x = x + self.proj1((att @ torch.cat([past_v, v], 3)).reshape(-1, w))
        q = self.q(self.norm2(x)).reshape(1, -1, H, 1, Dh) * (1.0 / Dh**0.5)
        att = F.softmax(q @ mem_k.transpose(-2, -1), dim=-1)
        x = x + self.proj2((att @ mem_v).reshape(-1, w))
        return x + self.mlp(self.norm3(x)), k, v


class ARPolicy(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.tok_emb = nn.Embedding(cfg.vocab_size, w)
        self.pos_emb = nn.Parameter(torch.randn(cfg.num_tokens + 1, w) * 0.02)  # K+1 slots
        self.obs_in = nn.Linear(cfg.obs_dim, w)
        self.obs_pos = nn.Parameter(torch.randn(cfg.n_obs_steps, w) * 0.02)
        self.obs_mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.Mish(), nn.Linear(4 * w, w))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(PolicyBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(w)
        self.head = nn.Linear(w, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied
        self.register_buffer("causal", causal_mask(cfg.num_tokens), persistent=False)
        self.register_buffer("slots", torch.arange(cfg.num_tokens), persistent=False)
        nn.init.normal_(self.tok_emb.weight, std=0.02)

    # -- checks -------------------------------------------------------------------------------
    def _check_obs(self, obs):
        c = self.cfg
        if obs.ndim != 3 or tuple(obs.shape[1:]) != (c.n_obs_steps, c.obs_dim):
            raise ValueError(f"obs_norm: expected shape [B, {c.n_obs_steps}, {c.obs_dim}] "
                             f"(n_obs_steps, obs_dim), got {list(obs.shape)}")

    def _check_ids(self, ids):
        c = self.cfg
        if ids.ndim != 2 or ids.shape[1] != c.num_tokens:
            raise ValueError(f"ids: expected shape [B, {c.num_tokens}], got {list(ids.shape)}")
        if (ids < 0).any() or (ids >= c.codebook_size).any():
            got = f"min {int(ids.min())} max {int(ids.max())}"
            raise ValueError(f"ids: expected values in [0, {c.codebook_size}), got {got}")

    # -- graphs ---------------------------------------------------------------------------------
    def prefill(self, obs_norm):
        """obs_norm [B,T,obs_dim] -> (mem_k, mem_v) each [L,B,H,T,Dh]."""
        mem = self.obs_mlp(self.obs_in(obs_norm) + self.obs_pos)
        kvs = [blk.memory_kv(mem) for blk in self.blocks]
        return torch.stack([k for k, _ in kvs]), torch.stack([v for _, v in kvs])

    def forward(self, obs_norm, ids):
        """Teacher forcing: input [BOS, ids[:, :-1]] -> logits [B,K,vocab] for ids."""
        self._check_obs(obs_norm)
        self._check_ids(ids)
        B, K = ids.shape
        mem_k, mem_v = self.prefill(obs_norm)
        inp = torch.cat([torch.full((B, 1), self.cfg.bos_id, dtype=torch.long, device=ids.device), ids[:, :-1]], 1)
        x = self.drop(self.tok_emb(inp) + self.pos_emb[:K])
        for l, blk in enumerate(self.blocks):
            x, _, _ = blk(x, lambda k, v: (k, v), self.causal, mem_k[l], mem_v[l])
        return self.head(self.norm(x))

    def loss(self, obs_norm, ids):
        logits = self(obs_norm, ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
        with torch.no_grad():
            acc = (logits[..., : self.cfg.codebook_size].argmax(-1) == ids).float().mean()
        return loss, {"ce": loss.detach(), "acc": acc}

    def step(self, token, step, past_k, past_v, mem_k, mem_v):
        """One position (DESIGN.md §5). token [B] int64, step [1] int64,
        past_k/v [L,B,H,K,Dh] (slots >= step ignored), mem_k/v [L,B,H,T,Dh]
        -> logits [B,vocab], new_k/new_v [L,B,H,1,Dh]."""
        x = self.tok_emb(token) + self.pos_emb[step]  # [B,w]: one position, kept 2-D
        # fixed-shape mask over [K past slots | this position]: past slots >= step -> -inf
        past_ok = self.slots < step
        mask = torch.cat([torch.zeros_like(self.slots, dtype=x.dtype).masked_fill(~past_ok, NEG_INF),
                          torch.zeros(1, dtype=x.dtype, device=x.device)]).unsqueeze(0)  # [1, K+1]
        # split(1) keeps each layer's slice 5-D: one Split per input in the graph, no Squeeze
        layers = zip(self.blocks, *(t.split(1, dim=0) for t in (past_k, past_v, mem_k, mem_v)))
        new_k, new_v = [], []
        for blk, pk, pv, mk, mv in layers:
            x, k, v = blk.step(x, pk, pv, mask, mk, mv)
            new_k.append(k)
            new_v.append(v)
        logits = self.head(self.norm(x))
        return logits, torch.cat(new_k), torch.cat(new_v)

    def empty_cache(self, B, device=None, dtype=torch.float32):
        c = self.cfg
        shape = (c.n_layers, B, c.n_heads, c.num_tokens, c.head_dim)
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    @torch.no_grad()
    def generate(self, obs_norm, max_tokens=None, temperature=1.0, top_k=10, seed=None):
        """KV-cached sampling with oat_edge.sampling (BOS never sampled) -> ids int64 [B,k]."""
        c = self.cfg
        obs_norm = torch.as_tensor(obs_norm, dtype=torch.float32)
        self._check_obs(obs_norm)
        if not torch.isfinite(obs_norm).all():
            raise ValueError("obs_norm: expected finite values, got NaN/Inf")
        k = c.num_tokens if max_tokens is None else max_tokens
        if isinstance(k, bool) or int(k) != k or not (1 <= int(k) <= c.num_tokens):
            raise ValueError(f"max_tokens: expected an int in 1..{c.num_tokens}, got {max_tokens!r}")
        rng = sampling.SplitMix64(secrets.randbits(64) if seed is None else seed)
        B, dev = obs_norm.shape[0], obs_norm.device
        mem_k, mem_v = self.prefill(obs_norm)
        past_k, past_v = self.empty_cache(B, dev)
        token = torch.full((B,), c.bos_id, dtype=torch.long, device=dev)
        out = []
        for t in range(int(k)):
            logits, nk, nv = self.step(token, torch.tensor([t], device=dev), past_k, past_v, mem_k, mem_v)
            past_k[:, :, :, t : t + 1] = nk
            past_v[:, :, :, t : t + 1] = nv
            ids = sampling.sample_batch(logits.float().cpu().numpy(), c.codebook_size, temperature, top_k, rng)
            token = torch.from_numpy(ids).to(dev)
            out.append(token)
        return torch.stack(out, 1)


def tokenizer_from_checkpoint(ck):
    if ck["kind"] == "bin":
        return BinTokenizer.from_checkpoint(ck)
    return OATTokenizer.from_checkpoint(ck)


class TokenPolicy(nn.Module):
    """Frozen tokenizer + AR policy + observation normalizer: raw obs in, raw actions out."""

    def __init__(self, tokenizer, ar_policy, obs_normalizer):
        super().__init__()
        c = ar_policy.cfg
        if tokenizer.num_tokens != c.num_tokens or tokenizer.codebook_size != c.codebook_size:
            raise ValueError(f"ar_policy.cfg: expected num_tokens={tokenizer.num_tokens}, codebook_size="
                             f"{tokenizer.codebook_size} (from the tokenizer), got {c.num_tokens}, {c.codebook_size}")
        if obs_normalizer.dim != c.obs_dim:
            raise ValueError(f"obs_normalizer.dim: expected obs_dim={c.obs_dim}, got {obs_normalizer.dim}")
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.policy = ar_policy
        self.obs_normalizer = obs_normalizer

    def train(self, mode=True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: no dropout, ever
        return self

    @torch.no_grad()
    def predict(self, obs_raw, max_tokens=None, temperature=1.0, top_k=10, seed=None):
        """obs_raw [B,T,obs_dim] or [T,obs_dim] -> raw actions [B,H,D] or [H,D]."""
        obs = torch.as_tensor(np.asarray(obs_raw) if not isinstance(obs_raw, torch.Tensor) else obs_raw,
                              dtype=torch.float32)
        single = obs.ndim == 2
        if single:
            obs = obs.unsqueeze(0)
        c = self.policy.cfg
        if obs.ndim != 3 or tuple(obs.shape[1:]) != (c.n_obs_steps, c.obs_dim):
            raise ValueError(f"obs_raw: expected shape [B, {c.n_obs_steps}, {c.obs_dim}] or "
                             f"[{c.n_obs_steps}, {c.obs_dim}], got {list(obs.shape)}")
        if not torch.isfinite(obs).all():
            raise ValueError("obs_raw: expected finite values, got NaN/Inf")
        was = self.training
        self.eval()
        ids = self.policy.generate(self.obs_normalizer.normalize(obs), max_tokens, temperature, top_k, seed)
        self.train(was)
        act = self.tokenizer.detokenize(ids, ids.shape[1])
        return act[0] if single else act

    def checkpoint(self):
        return {"tokenizer": self.tokenizer.checkpoint(), "policy_config": asdict(self.policy.cfg),
                "policy_state": self.policy.state_dict(), "obs_normalizer": self.obs_normalizer.to_dict()}

    @classmethod
    def from_checkpoint(cls, ck):
        pol = ARPolicy(PolicyConfig(**ck["policy_config"]))
        pol.load_state_dict(ck["policy_state"])
        return cls(tokenizer_from_checkpoint(ck["tokenizer"]), pol, Normalizer.from_dict(ck["obs_normalizer"]))

    def save(self, path):
        save_checkpoint(self.checkpoint(), path)

    @classmethod
    def load(cls, path, map_location="cpu"):
        return cls.from_checkpoint(load_checkpoint(path, map_location))
