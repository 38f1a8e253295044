"""FAST-style baseline tokenizer: DCT + byte-pair encoding, the baseline OAT is compared with.

    actions_raw [H, D] --normalizer--> [-1, 1] --DCT-II over time (orthonormal, per dim)-->
    coefficients [H, D] --* scale, round--> integers --frequency-major flatten--> H*D symbols
    --BPE merges (learned on the training chunks)--> variable-length id sequence (<= max_tokens)

Decoding expands every id back into its base symbols. Only a sequence that expands to exactly
H*D symbols can be reshaped to [H, D] coefficients; any other sequence (a dropped, inserted or
substituted token that changes the expanded length, an id outside the learned vocabulary, a
truncated sequence) is *undecodable*: like FAST's own decoder we then use all-zero coefficients
(= normalized action 0 everywhere) and report ok=False. OAT has no such failure: every id
sequence decodes.

Token ids: 0 .. n_base-1 are base symbols (integer coefficient value - min_coef), n_base ..
vocab_size-1 are merges in the order they were learned, eos_id = vocab_size ends a sequence
(a policy over FAST tokens therefore has vocab_size + 1 outputs). The BPE is our own small
implementation, vectorised over one flat int array holding all training chunks separated by -1.
Merges stop at vocab_size or when the most frequent pair occurs fewer than min_frequency times.
"""
from __future__ import annotations

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .normalizer import Normalizer, check_action_chunks

_SEP = -1  # separates sequences in the flat BPE work array


def dct_matrix(n):
    """Orthonormal DCT-II matrix C [n, n] (float64): coeffs = C @ x, x = C.T @ coeffs."""
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * t + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] *= np.sqrt(0.5)
    return c


def _pair_counts(a, width):
    """Counts of adjacent (left, right) pairs in flat array a, pairs across separators excluded.
    Returns (codes, counts) with code = left * width + right, only codes with count > 0."""
    left, right = a[:-1], a[1:]
    valid = (left >= 0) & (right >= 0)
    codes = left[valid].astype(np.int64) * width + right[valid]
    if codes.size == 0:
        return codes, codes
    counts = np.bincount(codes)
    nz = np.flatnonzero(counts)
    return nz, counts[nz]


def _apply_merge(a, x, y, new):
    """Replace every non-overlapping (left to right) occurrence of the pair (x, y) by `new`."""
    pos = np.flatnonzero((a[:-1] == x) & (a[1:] == y))
    if pos.size == 0:
        return a
    if x == y:
        # in a run x x x x the matches are consecutive positions: keep every second one,
        # counted from the start of each run (left-to-right greedy merging)
        brk = np.ones(pos.size, dtype=bool)
        brk[1:] = pos[1:] != pos[:-1] + 1
        run_start = np.maximum.accumulate(np.where(brk, pos, 0))
        pos = pos[(pos - run_start) % 2 == 0]
    out = a.copy()
    out[pos] = new
    keep = np.ones(a.size, dtype=bool)
    keep[pos + 1] = False
    return out[keep]


def _flatten(seqs):
    """list of 1-D int arrays -> flat array with separators, and the (start, end) of each."""
    parts, bounds, p = [], [], 0
    for s in seqs:
        parts.append(np.asarray(s, dtype=np.int64))
        parts.append(np.array([_SEP], dtype=np.int64))
        bounds.append((p, p + len(s)))
        p += len(s) + 1
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), bounds


def _split(flat):
    """Inverse of _flatten after merges: split at the separators."""
    ends = np.flatnonzero(flat == _SEP)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [flat[s:e] for s, e in zip(starts, ends)]


class FASTTokenizer:
    kind = "fast"

    def __init__(self, action_dim=4, horizon=32, scale=10.0, vocab_size=1024, max_tokens=128,
                 min_frequency=2):
        for name, v in (("action_dim", action_dim), ("horizon", horizon), ("vocab_size", vocab_size),
                        ("max_tokens", max_tokens), ("min_frequency", min_frequency)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"FASTTokenizer.{name}: expected a positive int, got {v!r}")
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"FASTTokenizer.scale: expected a positive finite number, got {scale!r}")
        self.action_dim, self.horizon = action_dim, horizon
        self.scale = float(scale)
        self.vocab_size, self.max_tokens, self.min_frequency = vocab_size, max_tokens, min_frequency
        self.eos_id = vocab_size
        self.num_tokens = max_tokens  # the longest sequence a policy emits (plus EOS)
        self.codebook_size = vocab_size
        self.normalizer = Normalizer(action_dim)
        self._dct = dct_matrix(horizon)
        self.min_coef = 0
        self.n_base = 0
        self.merges = []          # list of (left_id, right_id); merge j creates id n_base + j
        self._expand = []         # id -> np.int64 array of base symbols
        self.fitted = False

    # -- DCT ----------------------------------------------------------------------------------
    def dct(self, x_norm):
        """[B, H, D] normalized actions -> [B, H, D] DCT-II coefficients (row = frequency)."""
        return np.einsum("kt,btd->bkd", self._dct, np.asarray(x_norm, dtype=np.float64))

    def idct(self, coeffs):
        return np.einsum("kt,bkd->btd", self._dct, np.asarray(coeffs, dtype=np.float64))

    def _check_actions(self, a):
        return check_action_chunks(a, self.horizon, self.action_dim)

    def quantize(self, actions_raw):
        """raw actions [B, H, D] -> integer coefficients [B, H, D] (normalize, clamp, DCT, round)."""
        a = self.normalizer.normalize(self._check_actions(actions_raw)).clamp(-1.0, 1.0)
        return np.rint(self.dct(a.numpy()) * self.scale).astype(np.int64)

    def _symbols(self, q):
        """integer coefficients [B, H, D] -> base symbols [B, H*D] (frequency-major), clipped
        into the alphabet seen at fit time."""
        return np.clip(q.reshape(q.shape[0], -1) - self.min_coef, 0, self.n_base - 1)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, actions_raw_chunks, range_eps=1e-4):
        """Fit the normalizer (min-max over all chunks) and the BPE merges on [N, H, D] chunks."""
        a = self._check_actions(actions_raw_chunks)
        if a.shape[0] == 0:
            raise ValueError("actions_raw_chunks: expected at least one chunk, got 0")
        self.normalizer = Normalizer.fit(a, range_eps)
        q = self.quantize(a)
        self.min_coef = int(q.min())
        self.n_base = int(q.max()) - self.min_coef + 1
        if self.n_base > self.vocab_size:
            raise ValueError(f"vocab_size: the data needs {self.n_base} base symbols (integer DCT "
                             f"coefficients {self.min_coef}..{int(q.max())} at scale {self.scale}); "
                             f"expected vocab_size >= {self.n_base}, got {self.vocab_size}")
        flat, _ = _flatten(list(self._symbols(q)))
        self.merges = []
        self._expand = [np.array([i], dtype=np.int64) for i in range(self.n_base)]
        width = self.vocab_size
        while self.n_base + len(self.merges) < self.vocab_size:
            codes, counts = _pair_counts(flat, width)
            if codes.size == 0:
                break
            best = int(np.argmax(counts))  # ties: lowest (left, right) code
            if counts[best] < self.min_frequency:
                break
            x, y = divmod(int(codes[best]), width)
            new = self.n_base + len(self.merges)
            flat = _apply_merge(flat, x, y, new)
            self.merges.append((x, y))
            self._expand.append(np.concatenate([self._expand[x], self._expand[y]]))
        self.fitted = True
        return self

    @property
    def num_ids(self):
        """Ids that expand to symbols: 0 .. num_ids-1 (<= vocab_size; EOS excluded)."""
        return self.n_base + len(self.merges)

    def _require_fit(self):
        if not self.fitted:
            raise RuntimeError("FASTTokenizer: call fit() (or load a fitted tokenizer) first")

    # -- tokenize -----------------------------------------------------------------------------
    def encode_symbols(self, symbol_seqs):
        """list of base-symbol sequences -> list of token id arrays (merges applied in order)."""
        flat, _ = _flatten(symbol_seqs)
        for j, (x, y) in enumerate(self.merges):
            flat = _apply_merge(flat, x, y, self.n_base + j)
        return _split(flat)

    def tokenize_full(self, actions_raw):
        """raw [B, H, D] -> list of B id lists, not truncated (a list may exceed max_tokens)."""
        self._require_fit()
        return [s.tolist() for s in self.encode_symbols(list(self._symbols(self.quantize(actions_raw))))]

    def tokenize(self, actions_raw, add_eos=False):
        """raw [B, H, D] -> list of B id lists of length <= max_tokens (+ eos_id if add_eos).
        A sequence longer than max_tokens is cut (what a fixed-budget policy sees); the cut
        sequence is undecodable."""
        out = [s[: self.max_tokens] for s in self.tokenize_full(actions_raw)]
        return [s + [self.eos_id] for s in out] if add_eos else out

    # -- detokenize ---------------------------------------------------------------------------
    def decode_coefficients(self, ids):
        """list of id sequences -> (integer coefficients [B, H, D], ok bool [B]).
        A sequence ends at its first eos_id. Undecodable sequences give all-zero coefficients."""
        self._require_fit()
        if isinstance(ids, (np.ndarray, torch.Tensor)):
            ids = np.asarray(ids).tolist()
        if len(ids) and not isinstance(ids[0], (list, tuple, np.ndarray)):
            ids = [ids]  # one sequence
        n_sym = self.horizon * self.action_dim
        coeffs = np.zeros((len(ids), self.horizon, self.action_dim), dtype=np.int64)
        ok = np.zeros(len(ids), dtype=bool)
        for b, seq in enumerate(ids):
            seq = [int(i) for i in seq]
            if self.eos_id in seq:
                seq = seq[: seq.index(self.eos_id)]
            if any(i < 0 or i >= self.num_ids for i in seq):
                continue
            sym = np.concatenate([self._expand[i] for i in seq]) if seq else np.zeros(0, np.int64)
            if sym.size != n_sym:
                continue
            coeffs[b] = (sym + self.min_coef).reshape(self.horizon, self.action_dim)
            ok[b] = True
        return coeffs, ok

    def detokenize_normalized(self, ids):
        """-> (normalized actions [B, H, D] float64, NOT clamped, ok [B])."""
        coeffs, ok = self.decode_coefficients(ids)
        return self.idct(coeffs / self.scale), ok

    def detokenize(self, ids):
        """list of id sequences -> (raw actions float32 [B, H, D], ok bool [B]). Decoded
        normalized actions are clamped to [-1, 1] before unnormalizing (DESIGN.md §4)."""
        a, ok = self.detokenize_normalized(ids)
        a = torch.from_numpy(np.clip(a, -1.0, 1.0).astype(np.float32))
        return self.normalizer.unnormalize(a).numpy(), ok

    # -- persistence --------------------------------------------------------------------------
    def checkpoint(self):
        self._require_fit()
        return {"kind": "fast",
                "config": {"action_dim": self.action_dim, "horizon": self.horizon, "scale": self.scale,
                           "vocab_size": self.vocab_size, "max_tokens": self.max_tokens,
                           "min_frequency": self.min_frequency},
                "min_coef": self.min_coef, "n_base": self.n_base,
                "merges": [list(m) for m in self.merges], "normalizer": self.normalizer.to_dict()}

    @classmethod
    def from_checkpoint(cls, ck):
        if ck.get("kind") != "fast":
            raise ValueError(f"checkpoint kind: expected 'fast', got {ck.get('kind')!r}")
        tok = cls(**ck["config"])
        tok.normalizer = Normalizer.from_dict(ck["normalizer"])
        tok.min_coef, tok.n_base = int(ck["min_coef"]), int(ck["n_base"])
        tok._expand = [np.array([i], dtype=np.int64) for i in range(tok.n_base)]
        for x, y in ck["merges"]:
            tok.merges.append((int(x), int(y)))
            tok._expand.append(np.concatenate([tok._expand[x], tok._expand[y]]))
        tok.fitted = True
        return tok

    def save(self, path):
        save_checkpoint(self.checkpoint(), path)

    @classmethod
    def load(cls, path):
        return cls.from_checkpoint(load_checkpoint(path, "cpu"))
