"""OAT: Ordered Action Tokenizer (arXiv 2602.04215).

actions [B, H, D] --encoder--> K register latents --FSQ--> K token ids
ids[:k] --FSQ lookup--> codes --(slots >= k := learned mask)--> decoder --> actions [B, H, D]

Nested dropout on the decoder input during training makes every prefix decodable and
pushes coarse information into the first tokens; FSQ makes every id a valid code.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import load_checkpoint, save_checkpoint
from .fsq import FSQ
from .normalizer import Normalizer, check_action_chunks

NEG_INF = float("-inf")

# ----------------------------------------------------------------------------------------------
# shared building blocks (policy.py imports these too)


class RMSNorm(nn.Module):
    # hand-written so the legacy ONNX exporter sees plain ops at opset 17
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def attend(q, k, v, mask=None, dropout_p=0.0, training=False):
    """q [B,H,Tq,Dh], k/v [B,H,Tk,Dh], mask additive [Tq,Tk] (0 / -inf) or None."""
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        att = att + mask
    att = F.softmax(att, dim=-1)
    if training and dropout_p > 0:
        att = F.dropout(att, dropout_p)
    return att @ v


def sincos_1d(n, dim):
    """Fixed sin-cos positions [n, dim] (first half sin, second half cos)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    pe = torch.zeros(n, dim)
    pe[:, : dim // 2] = torch.sin(pos * freq)
    pe[:, dim // 2 : 2 * (dim // 2)] = torch.cos(pos * freq)
    return pe


def bool_to_additive(allowed):
    return torch.zeros(allowed.shape).masked_fill(~allowed, NEG_INF)


def causal_mask(n):
    return bool_to_additive(torch.tril(torch.ones(n, n, dtype=torch.bool)))


def _heads(x, n_heads):
    # int(): T and C are fixed per graph, so the exported Reshape gets a constant target
    # ([-1, T, H, Dh]) instead of a Shape/Gather/Concat chain per call; only B stays dynamic.
    _, T, C = x.shape
    return x.reshape(-1, int(T), n_heads, int(C) // n_heads).transpose(1, 2)


def _merge(x):
    _, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(-1, int(T), int(H) * int(Dh))


# ----------------------------------------------------------------------------------------------
# config


KEEP_K = ("pow2", "uniform", "uniform-full")
P_FULL = 0.25  # "uniform-full": share of samples that keep all K tokens


@dataclass
class OATConfig:
    """Tokenizer sizes. The defaults are the CPU recipe's (presets.py has the paper's)."""
    action_dim: int = 4
    horizon: int = 32
    num_tokens: int = 8
    fsq_levels: tuple = (8, 5, 5, 5)
    enc_width: int = 96
    enc_depth: int = 2
    enc_heads: int = 4
    dec_width: int = 96
    dec_depth: int = 2
    dec_heads: int = 4
    dec_ff: int = 384  # 4 * dec_width
    dropout: float = 0.0
    nested_dropout: bool = True  # False = OATX
    causal_registers: bool = True  # False = registers attend to each other freely
    # nested-dropout prefix distribution: "pow2" (k in {1,2,4,8}), "uniform" (1..K), or
    # "uniform-full" (K with probability 1/4, else uniform in 1..K-1). Measured on Meta-World demos
    # (docs/DATA.md): with "uniform" the full-K path gets 1/K of the samples and k=8 reconstructs
    # worse than k=7; with "pow2" k=3,5,6,7 are never trained and the error is not monotonic in k.
    keep_k: str = "uniform-full"

    def __post_init__(self):
        self.fsq_levels = tuple(int(l) for l in self.fsq_levels)
        for name in ("action_dim", "horizon", "num_tokens", "enc_width", "enc_depth", "enc_heads",
                     "dec_width", "dec_depth", "dec_heads", "dec_ff"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"OATConfig.{name}: expected a positive int, got {v!r}")
        if self.enc_width % self.enc_heads:
            raise ValueError(
                f"OATConfig.enc_width: expected a multiple of enc_heads={self.enc_heads}, got {self.enc_width}")
        if self.dec_width % self.dec_heads:
            raise ValueError(
                f"OATConfig.dec_width: expected a multiple of dec_heads={self.dec_heads}, got {self.dec_width}")
        if self.keep_k not in KEEP_K:
            raise ValueError(f"OATConfig.keep_k: expected one of {KEEP_K}, got {self.keep_k!r}")


# ----------------------------------------------------------------------------------------------
# encoder: [H actions | K registers], pre-norm, QK-norm, SwiGLU, no biases


class EncoderBlock(nn.Module):
    def __init__(self, width, n_heads, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        dh = width // n_heads
        self.norm1 = nn.LayerNorm(width, bias=False)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_norm = RMSNorm(dh)
        self.k_norm = RMSNorm(dh)
        self.proj = nn.Linear(width, width, bias=False)
        self.norm2 = nn.LayerNorm(width, bias=False)
        hidden = int(8 * width / 3)  # SwiGLU at ~4x MLP parameter count
        self.w_gate = nn.Linear(width, hidden, bias=False)
        self.w_up = nn.Linear(width, hidden, bias=False)
        self.w_down = nn.Linear(hidden, width, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        q, k, v = self.qkv(self.norm1(x)).split(x.shape[-1], dim=-1)
        q = self.q_norm(_heads(q, self.n_heads))
        k = self.k_norm(_heads(k, self.n_heads))
        y = attend(q, k, _heads(v, self.n_heads), mask, self.dropout, self.training)
        x = x + self.drop(self.proj(_merge(y)))
        h = self.norm2(x)
        return x + self.drop(self.w_down(F.silu(self.w_gate(h)) * self.w_up(h)))


def register_mask(horizon, num_tokens, causal_registers=True):
    """Additive [H+K, H+K] mask: actions<->actions full, actions->registers blocked,
    registers->actions allowed, register i->register j only if j <= i (when causal)."""
    n = horizon + num_tokens
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[:horizon, :horizon] = True
    allowed[horizon:, :horizon] = True
    if causal_registers:
        allowed[horizon:, horizon:] = torch.tril(torch.ones(num_tokens, num_tokens, dtype=torch.bool))
    else:
        allowed[horizon:, horizon:] = True
    return bool_to_additive(allowed)


class OATEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w = cfg.enc_width
        self.inp = nn.Linear(cfg.action_dim, w, bias=False)
        self.register_buffer("pos", sincos_1d(cfg.horizon, w), persistent=False)
        self.registers = nn.Parameter(torch.randn(cfg.num_tokens, w) * 0.02)
        self.register_buffer("mask", register_mask(cfg.horizon, cfg.num_tokens, cfg.causal_registers),
                             persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(w, cfg.enc_heads, cfg.dropout) for _ in range(cfg.enc_depth))
        self.norm = nn.LayerNorm(w, bias=False)
        self.head = nn.Linear(w, len(cfg.fsq_levels), bias=False)
        nn.init.zeros_(self.head.weight)
        self.horizon = cfg.horizon

    def forward(self, actions_norm):
        B = actions_norm.shape[0]
        x = self.inp(actions_norm) + self.pos
        x = torch.cat([x, self.registers.unsqueeze(0).expand(B, -1, -1)], dim=1)
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x, self.mask)
        return self.head(self.norm(x[:, self.horizon:]))  # [B, K, code_dim] pre-quantization


# ----------------------------------------------------------------------------------------------
# decoder: sin-cos queries, causal self-attn, cross-attn to the K latent slots


class DecoderBlock(nn.Module):
    def __init__(self, width, n_heads, ff, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj1 = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj2 = nn.Linear(width, width)
        self.norm3 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, self_mask):
        h, H = x.shape[-1], self.n_heads
        q, k, v = self.qkv(self.norm1(x)).split(h, dim=-1)
        y = attend(_heads(q, H), _heads(k, H), _heads(v, H), self_mask, self.dropout, self.training)
        x = x + self.drop(self.proj1(_merge(y)))
        k, v = self.kv(memory).split(h, dim=-1)
        y = attend(_heads(self.q(self.norm2(x)), H), _heads(k, H), _heads(v, H), None, self.dropout, self.training)
        x = x + self.drop(self.proj2(_merge(y)))
        return x + self.drop(self.mlp(self.norm3(x)))


class OATDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        w = cfg.dec_width
        self.num_tokens = cfg.num_tokens
        self.latent_in = nn.Linear(len(cfg.fsq_levels), w)
        self.register_buffer("slot_pos", sincos_1d(cfg.num_tokens, w), persistent=False)
        self.mask_token = nn.Parameter(nn.init.trunc_normal_(torch.empty(w), std=0.02))
        self.register_buffer("queries", sincos_1d(cfg.horizon, w), persistent=False)
        self.register_buffer("self_mask", causal_mask(cfg.horizon), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(w, cfg.dec_heads, cfg.dec_ff, cfg.dropout)
                                    for _ in range(cfg.dec_depth))
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, cfg.action_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def memory(self, codes, num_tokens):
        """codes [B,K,code_dim], num_tokens LongTensor [B] -> latent slots [B,K,w];
        slots >= num_tokens are overwritten by the learned mask vector."""
        m = self.latent_in(codes) + self.slot_pos
        keep = torch.arange(self.num_tokens, device=codes.device)[None, :] < num_tokens[:, None]
        return torch.where(keep[..., None], m, self.mask_token.to(m.dtype))

    def forward(self, codes, num_tokens):
        mem = self.drop(self.memory(codes, num_tokens))
        x = self.queries.unsqueeze(0).expand(codes.shape[0], -1, -1)
        for blk in self.blocks:
            x = blk(x, mem, self.self_mask)
        return self.head(self.norm(x))


# ----------------------------------------------------------------------------------------------
# tokenizer


class OATTokenizer(nn.Module):
    def __init__(self, cfg=None):
        super().__init__()
        self.cfg = cfg = cfg or OATConfig()
        self.fsq = FSQ(cfg.fsq_levels)
        self.encoder = OATEncoder(cfg)
        self.decoder = OATDecoder(cfg)
        self.normalizer = Normalizer(cfg.action_dim)
        self.num_tokens = cfg.num_tokens
        self.codebook_size = self.fsq.codebook_size
        self.horizon = cfg.horizon
        self.action_dim = cfg.action_dim
        if cfg.keep_k == "pow2":
            ks = [2 ** i for i in range(cfg.num_tokens.bit_length()) if 2 ** i <= cfg.num_tokens]
            ks = sorted(set(ks + [cfg.num_tokens]))
        else:
            ks = list(range(1, cfg.num_tokens + 1))
        self.register_buffer("_keep_choices", torch.tensor(ks, dtype=torch.int64), persistent=False)

    @property
    def kind(self):
        k = "oat" if self.cfg.nested_dropout else "oatx"
        return k if self.cfg.causal_registers else k + "_nocausal"

    @property
    def code_dim(self):
        return self.fsq.dim

    def set_normalizer(self, normalizer):
        if normalizer.dim != self.action_dim:
            raise ValueError(f"normalizer.dim: expected action_dim={self.action_dim}, got {normalizer.dim}")
        self.normalizer.load_state_dict(normalizer.state_dict())  # copy: never alias another module's stats

    # -- input checks -------------------------------------------------------------------------
    def _check_actions(self, name, a):
        return check_action_chunks(a, self.horizon, self.action_dim, name)

    def _check_k(self, k, B, device):
        K = self.num_tokens
        if isinstance(k, torch.Tensor):
            k = k.to(device=device, dtype=torch.int64).reshape(-1)
            if k.numel() == 1:
                k = k.expand(B)
            if k.shape[0] != B:
                raise ValueError(f"num_tokens: expected {B} values (one per batch row), got {k.shape[0]}")
            if (k < 1).any() or (k > K).any():
                raise ValueError(f"num_tokens: expected values in 1..{K}, got {k.tolist()}")
            return k
        if isinstance(k, bool) or int(k) != k or not (1 <= int(k) <= K):
            raise ValueError(f"k: expected an int in 1..{K}, got {k!r}")
        return torch.full((B,), int(k), dtype=torch.int64, device=device)

    # -- core ---------------------------------------------------------------------------------
    def encode(self, actions_norm):
        """actions_norm [B,H,D] -> (codes [B,K,code_dim] in [-1,1], ids int64 [B,K])."""
        return self.fsq(self.encoder(actions_norm))

    def decode_codes(self, codes, num_tokens):
        """codes [B,K,code_dim], num_tokens int or LongTensor[B] -> normalized actions [B,H,D]."""
        if codes.ndim != 3 or tuple(codes.shape[1:]) != (self.num_tokens, self.code_dim):
            raise ValueError(f"codes: expected shape [B, {self.num_tokens}, {self.code_dim}], got {list(codes.shape)}")
        return self.decoder(codes, self._check_k(num_tokens, codes.shape[0], codes.device))

    def sample_keep_k(self, B, device=None):
        if self.cfg.keep_k == "uniform-full":
            K = self.num_tokens
            k = torch.randint(1, max(K, 2), (B,), device=device).clamp(max=K)
            return torch.where(torch.rand(B, device=device) < P_FULL, torch.full_like(k, K), k)
        idx = torch.randint(len(self._keep_choices), (B,), device=device)
        return self._keep_choices.to(device)[idx]

    def loss(self, actions_raw):
        a = self.normalizer.normalize(self._check_actions("actions_raw", actions_raw))
        codes, ids = self.encode(a)
        B = a.shape[0]
        if self.training and self.cfg.nested_dropout:
            keep = self.sample_keep_k(B, a.device)
        else:
            keep = torch.full((B,), self.num_tokens, dtype=torch.int64, device=a.device)
        recon = self.decoder(codes, keep)
        loss = F.mse_loss(recon, a)
        return loss, {"mse": loss.detach(), "keep_k_mean": keep.float().mean(), "ids": ids.detach()}

    @torch.no_grad()
    def tokenize(self, actions_raw):
        a = self.normalizer.normalize(self._check_actions("actions_raw", actions_raw))
        return self.encode(a)[1]

    @torch.no_grad()
    def detokenize(self, ids, k=None):
        """ids [B, k'] (k' <= K) -> raw actions [B,H,D]. Uses the first k ids (default k')."""
        ids = torch.as_tensor(ids)
        if ids.ndim == 1:
            ids = ids.unsqueeze(0)
        if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"ids: expected an integer array [B, k], got dtype {ids.dtype} shape {list(ids.shape)}")
        ids = ids.to(torch.int64)
        K, n = self.num_tokens, ids.shape[1]
        k = n if k is None else k
        if isinstance(k, bool) or int(k) != k or not (1 <= int(k) <= K):
            raise ValueError(f"k: expected an int in 1..{K}, got {k!r}")
        k = int(k)
        if n < k:
            raise ValueError(f"ids: expected at least k={k} tokens per row, got {n}")
        if n > K:
            raise ValueError(f"ids: expected at most {K} tokens per row (num_tokens), got {n}")
        if ids.numel() and ((ids < 0).any() or (ids >= self.codebook_size).any()):
            raise ValueError(f"ids: expected values in [0, {self.codebook_size}), got min "
                             f"{int(ids.min())} max {int(ids.max())}")
        dev = self.normalizer.scale.device
        full = torch.zeros(ids.shape[0], K, dtype=torch.int64, device=dev)
        full[:, :k] = ids[:, :k].to(dev)
        a = self.decode_codes(self.fsq.ids_to_codes(full), k)
        return self.normalizer.unnormalize(a.clamp(-1.0, 1.0))

    # -- persistence --------------------------------------------------------------------------
    def checkpoint(self):
        return {"kind": self.kind, "config": asdict(self.cfg), "state_dict": self.state_dict(),
                "normalizer": self.normalizer.to_dict()}

    @classmethod
    def from_checkpoint(cls, ck):
        tok = cls(OATConfig(**ck["config"]))
        tok.load_state_dict(ck["state_dict"])  # strict: a missing zero-init head must fail loudly
        return tok

    def save(self, path):
        save_checkpoint(self.checkpoint(), path)

    @classmethod
    def load(cls, path, map_location="cpu"):
        return cls.from_checkpoint(load_checkpoint(path, map_location))
