"""Per-dimension min-max normalizer to [-1, 1] (DESIGN.md §4)."""
import torch
import torch.nn as nn


def _finite_tensor(name, x):
    x = torch.as_tensor(x, dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got NaN/Inf")
    return x


class Normalizer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = int(dim)
        # identity until fit(): scale 1, offset 0, unbounded range
        self.register_buffer("scale", torch.ones(self.dim))
        self.register_buffer("offset", torch.zeros(self.dim))
        self.register_buffer("low", torch.full((self.dim,), -1.0))
        self.register_buffer("high", torch.full((self.dim,), 1.0))

    @classmethod
    def fit(cls, x, range_eps=1e-4):
        """x [..., D] (a Tensor or array of the whole dataset) -> fitted Normalizer."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim < 1 or x.shape[-1] == 0:
            raise ValueError(f"x: expected shape [..., D] with D >= 1, got {list(x.shape)}")
        x = x.reshape(-1, x.shape[-1])
        if x.shape[0] == 0:
            raise ValueError(f"x: expected at least one sample, got shape {list(x.shape)}")
        _finite_tensor("x", x)
        lo, hi = x.min(0).values, x.max(0).values
        rng = hi - lo
        wide = rng >= range_eps
        scale = torch.where(wide, 2.0 / torch.where(wide, rng, torch.ones_like(rng)), torch.ones_like(rng))
        # constant dims pass through centred
        offset = torch.where(wide, -1.0 - lo * scale, -(hi + lo) / 2)
        n = cls(x.shape[-1])
        n.scale.copy_(scale)
        n.offset.copy_(offset)
        n.low.copy_(lo)
        n.high.copy_(hi)
        return n

    def _check(self, name, x):
        if x.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected last dim {self.dim}, got {x.shape[-1]} (shape {list(x.shape)})")

    def normalize(self, x):
        self._check("x", x)
        return x * self.scale + self.offset

    def unnormalize(self, x_norm):
        self._check("x_norm", x_norm)
        return (x_norm - self.offset) / self.scale

    def to_dict(self):
        return {k: getattr(self, k).tolist() for k in ("scale", "offset", "low", "high")}

    @classmethod
    def from_dict(cls, d):
        missing = [k for k in ("scale", "offset", "low", "high") if k not in d]
        if missing:
            raise ValueError(f"normalizer dict: expected keys scale/offset/low/high, missing {missing}")
        dim = len(d["scale"])
        n = cls(dim)
        for k in ("scale", "offset", "low", "high"):
            v = _finite_tensor(k, d[k])
            if v.shape != (dim,):
                raise ValueError(f"{k}: expected length {dim}, got {list(v.shape)}")
            getattr(n, k).copy_(v)
        if (n.scale == 0).any():
            raise ValueError("scale: expected non-zero values, got a zero")
        return n


def check_action_chunks(a, horizon: int, action_dim: int, name: str = "actions_raw") -> torch.Tensor:
    """Every tokenizer's input check: float32 [B, horizon, action_dim], finite."""
    a = torch.as_tensor(a).to(torch.float32)
    if a.ndim != 3 or tuple(a.shape[1:]) != (horizon, action_dim):
        raise ValueError(f"{name}: expected shape [B, {horizon}, {action_dim}] "
                         f"(horizon, action_dim), got {list(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, got NaN/Inf")
    return a
