"""Bin baseline tokenizer: 256 uniform bins per normalized dimension, time-major flattening
(token index = t * action_dim + d), H*D tokens per chunk. No trainable weights."""
import torch
import torch.nn as nn

from .checkpoint import load_checkpoint, save_checkpoint
from .normalizer import Normalizer, check_action_chunks


class BinTokenizer(nn.Module):
    kind = "bin"

    def __init__(self, action_dim=4, horizon=32, bins=256):
        super().__init__()
        for name, v in (("action_dim", action_dim), ("horizon", horizon), ("bins", bins)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"BinTokenizer.{name}: expected a positive int, got {v!r}")
        if bins < 2:
            raise ValueError(f"BinTokenizer.bins: expected >= 2, got {bins}")
        self.action_dim, self.horizon, self.bins = action_dim, horizon, bins
        self.num_tokens = horizon * action_dim
        self.codebook_size = bins
        self.normalizer = Normalizer(action_dim)

    def set_normalizer(self, normalizer):
        if normalizer.dim != self.action_dim:
            raise ValueError(f"normalizer.dim: expected action_dim={self.action_dim}, got {normalizer.dim}")
        self.normalizer.load_state_dict(normalizer.state_dict())

    def fit(self, actions_raw, range_eps=1e-4):
        """The only 'training': fit the action normalizer on [N, H, D] (or [..., D]) actions."""
        self.set_normalizer(Normalizer.fit(torch.as_tensor(actions_raw, dtype=torch.float32), range_eps))
        return self

    def _check_actions(self, a):
        return check_action_chunks(a, self.horizon, self.action_dim)

    @torch.no_grad()
    def tokenize(self, actions_raw):
        a = self.normalizer.normalize(self._check_actions(actions_raw)).clamp(-1.0, 1.0)
        ids = torch.floor((a + 1.0) / 2.0 * self.bins).to(torch.int64).clamp(0, self.bins - 1)
        return ids.reshape(a.shape[0], -1)  # [B, H, D] row-major = time-major

    @torch.no_grad()
    def detokenize(self, ids, k=None):
        """ids [B, n]; the first k tokens are used, the rest of the chunk decodes to bin centre 0
        (normalized), so every prefix decodes."""
        ids = torch.as_tensor(ids)
        if ids.ndim == 1:
            ids = ids.unsqueeze(0)
        if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"ids: expected an integer array [B, k], got dtype {ids.dtype} shape {list(ids.shape)}")
        K, n = self.num_tokens, ids.shape[1]
        k = n if k is None else k
        if isinstance(k, bool) or int(k) != k or not (1 <= int(k) <= K):
            raise ValueError(f"k: expected an int in 1..{K}, got {k!r}")
        k = int(k)
        if n < k or n > K:
            raise ValueError(f"ids: expected between k={k} and {K} tokens per row, got {n}")
        ids = ids.to(torch.int64)
        if (ids < 0).any() or (ids >= self.bins).any():
            raise ValueError(f"ids: expected values in [0, {self.bins}), got min {int(ids.min())} max {int(ids.max())}")
        a = torch.zeros(ids.shape[0], K, device=self.normalizer.scale.device)
        a[:, :k] = (ids[:, :k].float() + 0.5) / self.bins * 2.0 - 1.0
        a = a.reshape(-1, self.horizon, self.action_dim)
        return self.normalizer.unnormalize(a.clamp(-1.0, 1.0))

    def checkpoint(self):
        return {"kind": "bin", "config": {"action_dim": self.action_dim, "horizon": self.horizon, "bins": self.bins},
                "state_dict": self.state_dict(), "normalizer": self.normalizer.to_dict()}

    @classmethod
    def from_checkpoint(cls, ck):
        tok = cls(**ck["config"])
        tok.load_state_dict(ck["state_dict"])
        return tok

    def save(self, path):
        save_checkpoint(self.checkpoint(), path)

    @classmethod
    def load(cls, path, map_location="cpu"):
        return cls.from_checkpoint(load_checkpoint(path, map_location))
