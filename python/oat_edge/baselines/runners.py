"""ONNX Runtime runners for the baseline bundles, with oat_edge.Policy's interface.

`open_runner(path)` returns an object with `.info` and `.act(obs, max_tokens=, temperature=,
top_k=, seed=, return_stats=)`, so the closed-loop evaluation, the control loop and the latency
benchmark run FAST, Bin and Diffusion Policy exactly as they run OAT. An OAT bundle opened here
runs through the same numpy + onnxruntime loop (oat_edge.ort_reference), which makes a
like-for-like latency row next to the C++ runtime's.

numpy + onnxruntime only (no torch, no diffusers): the DDIM update and the FAST decoder are
written out here and pinned to diffusers and to train/fast_tokenizer.py by tests.
"""
from __future__ import annotations

import json
import os
import secrets

import numpy as np

from oat_edge import sampling
from oat_edge.errors import BundleError, InputError

MANIFEST_FILE = "baseline.json"
FORMAT = "oat_edge.baseline"


class UndecodableActions(RuntimeError):
    """The generated tokens do not decode to an action chunk (FAST): nothing to execute."""


def _session(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  (ORT raises its own exception types)
        raise BundleError(f"could not load graph {path}: {exc}") from None


def _obs_batch(obs, shape) -> tuple[np.ndarray, bool]:
    arr = np.asarray(obs)
    if arr.dtype.kind != "f":
        raise InputError(f"obs: expected a float array, got dtype {arr.dtype}")
    if arr.shape == shape:
        arr, single = arr[None], True
    elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape and arr.shape[0] > 0:
        single = False
    else:
        raise InputError(f"obs: expected shape {list(shape)} or [B, {', '.join(map(str, shape))}], got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError("obs: expected finite values, got NaN/Inf")
    return arr, single


def _check_options(name: str, K: int, max_tokens=None, temperature=None, top_k=None, seed=None,
                   latency_budget_ms=None, min_tokens=None, anytime=False) -> None:
    """Raise InputError for act() options this policy cannot honour (what act() would raise)."""
    for opt, v in (("max_tokens", max_tokens), ("min_tokens", min_tokens)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= K):
            raise InputError(f"{opt}: expected an int in 1..{K} ({name}), got {v!r}")
    if temperature is not None and not (isinstance(temperature, (int, float)) and np.isfinite(temperature)
                                        and temperature >= 0):
        raise InputError(f"temperature: expected a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0):
        raise InputError(f"top_k: expected an int >= 0, got {top_k!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed < 2**64):
        raise InputError(f"seed: expected an int in [0, 2**64), got {seed!r}")
    if latency_budget_ms is not None and not anytime:
        raise InputError(f"latency_budget_ms: {name} has no anytime mode, got {latency_budget_ms!r}")


def load_baseline_manifest(bundle) -> tuple[dict, str]:
    bundle = os.fspath(bundle)
    path = os.path.join(bundle, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise BundleError(f"{bundle!r}: expected a baseline bundle directory with {MANIFEST_FILE} "
                          "(write one with `python -m oat_export.baselines`)")
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable JSON manifest: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"{path}: expected format {FORMAT!r}, got {m.get('format') if isinstance(m, dict) else m!r}")
    for key in ("kind", "files", "horizon", "action_dim", "n_obs_steps", "obs_dim", "n_action_steps",
                "normalization"):
        if key not in m:
            raise BundleError(f"{path}: field {key!r} missing")
    for name, f in m["files"].items():
        if os.path.basename(f) != f or not os.path.isfile(os.path.join(bundle, f)):
            raise BundleError(f"{path}: files.{name} = {f!r}: expected a plain file name present in the bundle")
    return m, bundle


class _Runner:
    """What every runner shares: manifest, normalizers, info, stats."""

    def __init__(self, m: dict, bundle: str, threads: int):
        self.m, self.bundle = m, bundle
        self.sess = {g: _session(os.path.join(bundle, f), threads) for g, f in m["files"].items()}
        n = m["normalization"]
        self.obs_scale, self.obs_offset = np.float32(n["obs_scale"]), np.float32(n["obs_offset"])
        self.act_scale, self.act_offset = np.float32(n["action_scale"]), np.float32(n["action_offset"])
        self.obs_shape = (int(m["n_obs_steps"]), int(m["obs_dim"]))
        self.chunk_shape = (int(m["horizon"]), int(m["action_dim"]))
        self.last_stats: dict | None = None
        self._info = {"kind": m["kind"], "bundle_dir": bundle, "horizon": self.chunk_shape[0],
                      "action_dim": self.chunk_shape[1], "n_obs_steps": self.obs_shape[0],
                      "obs_dim": self.obs_shape[1], "n_action_steps": int(m["n_action_steps"]),
                      "tasks": list(m.get("tasks") or []), "action_low": list(n["action_low"]),
                      "action_high": list(n["action_high"]), "provider": "CPUExecutionProvider (Python loop)"}

    @property
    def info(self) -> dict:
        return dict(self._info)

    def _unnormalize(self, a_norm):
        return (np.clip(a_norm, -1.0, 1.0) - self.act_offset) / self.act_scale

    def _prefill(self, obs):
        return self.sess["prefill"].run(None, {"obs": obs * self.obs_scale + self.obs_offset})

    def _finish(self, out, single, stats, return_stats):
        self.last_stats = stats
        out = out[0] if single else out
        return (out, stats) if return_stats else out


class TokenRunner(_Runner):
    """FAST and Bin: KV-cached autoregressive sampling with oat_edge.sampling (as OAT's runtime),
    then the baseline's own detokenizer. FAST stops at the end token."""

    def __init__(self, m, bundle, threads=1):
        super().__init__(m, bundle, threads)
        p = m["policy"]
        self.K, self.cb, self.bos = int(p["num_tokens"]), int(p["codebook_size"]), int(p["bos_id"])
        self.cache_shape = (int(p["n_layers"]), int(p["n_heads"]), self.K, int(p["head_dim"]))
        self.temperature, self.top_k = float(m["sampling"]["temperature"]), int(m["sampling"]["top_k"])
        self._info.update(num_tokens=self.K, codebook_size=self.cb)
        if m["kind"] == "fast":
            f = m["fast"]
            self.eos = int(f["eos_id"])
            self.n_base, self.min_coef, self.dct_scale = int(f["n_base"]), int(f["min_coef"]), float(f["dct_scale"])
            self.expand = [np.array([i], np.int64) for i in range(self.n_base)]
            for x, y in f["merges"]:
                self.expand.append(np.concatenate([self.expand[x], self.expand[y]]))
            H = self.chunk_shape[0]
            k, t = np.arange(H)[:, None], np.arange(H)[None, :]
            self.dct = np.cos(np.pi * (2 * t + 1) * k / (2 * H)) * np.sqrt(2.0 / H)  # orthonormal DCT-II
            self.dct[0] *= np.sqrt(0.5)
        else:
            self.eos, self.bins = None, int(m["bin"]["bins"])

    def check_options(self, max_tokens=None, temperature=None, top_k=None, seed=None, latency_budget_ms=None,
                      min_tokens=None):
        _check_options(f"{self.m['kind']} policy", self.K, max_tokens, temperature, top_k, seed,
                       latency_budget_ms, min_tokens)

    def generate(self, obs_raw, max_tokens=None, temperature=None, top_k=None, seed=None):
        """obs [B, T, obs_dim] -> ids [B, n] (FAST: rows that ended are padded with the end token)."""
        obs, _ = _obs_batch(obs_raw, self.obs_shape)
        _check_options(f"{self.m['kind']} policy", self.K, max_tokens, temperature, top_k, seed)
        k = self.K if max_tokens is None else int(max_tokens)
        temperature = self.temperature if temperature is None else float(temperature)
        top_k = self.top_k if top_k is None else int(top_k)
        rng = sampling.SplitMix64(secrets.randbits(64) if seed is None else seed)
        B = obs.shape[0]
        mem_k, mem_v = self._prefill(obs)
        L, H, K, Dh = self.cache_shape
        pk = np.zeros((L, B, H, K, Dh), np.float32)
        pv = np.zeros_like(pk)
        tok = np.full(B, self.bos, np.int64)
        ended = np.zeros(B, bool)
        out = []
        for t in range(k):
            logits, nk, nv = self.sess["step"].run(None, {"token": tok, "step": np.array([t], np.int64),
                                                          "past_k": pk, "past_v": pv, "mem_k": mem_k, "mem_v": mem_v})
            pk[:, :, :, t:t + 1] = nk
            pv[:, :, :, t:t + 1] = nv
            tok = sampling.sample_batch(logits, self.cb, temperature, top_k, rng)
            if self.eos is not None:
                tok = np.where(ended, self.eos, tok)
                ended |= tok == self.eos
            out.append(tok)
            if self.eos is not None and ended.all():
                break
        return np.stack(out, 1)

    def fast_decode(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """FAST ids [B, n] -> (normalized chunks [B, H, D], ok [B]); a row decodes only if its ids
        (up to the first end token) expand to exactly H*D DCT symbols."""
        H, D = self.chunk_shape
        out, ok = np.zeros((len(ids), H, D)), np.zeros(len(ids), bool)
        for b, row in enumerate(np.asarray(ids, np.int64)):
            row = row[: int(np.argmax(row == self.eos))] if (row == self.eos).any() else row
            if ((row < 0) | (row >= len(self.expand))).any():
                continue
            sym = np.concatenate([self.expand[i] for i in row]) if len(row) else np.zeros(0, np.int64)
            if sym.size != H * D:
                continue
            coef = (sym + self.min_coef).reshape(H, D) / self.dct_scale
            out[b], ok[b] = self.dct.T @ coef, True
        return out, ok

    def act(self, obs, max_tokens=None, temperature=None, top_k=None, seed=None, latency_budget_ms=None,
            return_stats=False, min_tokens=None):
        """obs [T, obs_dim] or [B, T, obs_dim] -> raw chunk(s). FAST raises UndecodableActions when
        a row's tokens do not decode (the caller holds its last safe action)."""
        self.check_options(max_tokens, temperature, top_k, seed, latency_budget_ms, min_tokens)
        x, single = _obs_batch(obs, self.obs_shape)
        ids = self.generate(x, max_tokens, temperature, top_k, seed)
        stats = {"tokens_used": int(ids.shape[1])}  # step-graph runs, the end token included
        if self.eos is not None:
            a, ok = self.fast_decode(ids)
            stats["undecodable"] = int((~ok).sum())
            if not ok.all():
                self.last_stats = stats
                raise UndecodableActions(
                    f"FAST tokens of {stats['undecodable']} of {len(ok)} rows do not decode to a "
                    f"{self.chunk_shape[0]}x{self.chunk_shape[1]} chunk (they must expand to exactly "
                    f"{self.chunk_shape[0] * self.chunk_shape[1]} DCT coefficients)")
        else:
            n = ids.shape[1]
            a = np.zeros((len(ids), self.K))
            a[:, :n] = (ids + 0.5) / self.bins * 2.0 - 1.0  # unsampled tail: bin centre 0
            a = a.reshape(len(ids), *self.chunk_shape)
        return self._finish(self._unnormalize(a).astype(np.float32), single, stats, return_stats)


def ddim_timesteps(train_timesteps: int, steps: int) -> np.ndarray:
    """diffusers DDIMScheduler.set_timesteps with its default 'leading' spacing, steps_offset 0."""
    if not 1 <= steps <= train_timesteps:
        raise InputError(f"denoise steps: expected 1..{train_timesteps}, got {steps}")
    return (np.arange(steps) * (train_timesteps // steps)).round()[::-1].astype(np.int64)


def ddim_step(eps, t: int, x, alphas_cumprod, train_timesteps: int, steps: int, clip: float = 1.0):
    """One deterministic DDIM update (eta 0, epsilon prediction, x0 clipped; alpha_prev 1 past t=0)."""
    prev = t - train_timesteps // steps
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[prev] if prev >= 0 else 1.0
    x0 = np.clip((x - np.sqrt(1.0 - a_t) * eps) / np.sqrt(a_t), -clip, clip)
    return np.sqrt(a_prev) * x0 + np.sqrt(1.0 - a_prev) * eps


class DiffusionRunner(_Runner):
    """Diffusion Policy: prefill once, then `steps` DDIM updates, one denoiser run each."""

    def __init__(self, m, bundle, threads=1, steps=None):
        super().__init__(m, bundle, threads)
        d = m["diffusion"]
        self.T = int(d["train_timesteps"])
        self.steps = int(steps or d["inference_steps"])
        self.timesteps = ddim_timesteps(self.T, self.steps)
        self.alphas = np.asarray(d["alphas_cumprod"], np.float64)
        self.clip = float(d["clip_sample_range"])
        self._info.update(num_tokens=1, codebook_size=1, denoise_steps=self.steps)

    def check_options(self, max_tokens=None, temperature=None, top_k=None, seed=None, latency_budget_ms=None,
                      min_tokens=None):
        # token options mean nothing to a continuous policy; accepted as the one-"token" K = 1
        _check_options("Diffusion Policy", 1, max_tokens, temperature, top_k, seed, latency_budget_ms, min_tokens)

    def act(self, obs, max_tokens=None, temperature=None, top_k=None, seed=None, latency_budget_ms=None,
            return_stats=False, min_tokens=None, noise=None):
        """obs -> raw chunk(s) by DDIM from seeded Gaussian noise (or `noise`, normalized units)."""
        self.check_options(max_tokens, temperature, top_k, seed, latency_budget_ms, min_tokens)
        x_obs, single = _obs_batch(obs, self.obs_shape)
        B = x_obs.shape[0]
        if noise is not None:
            x = np.asarray(noise, np.float64).reshape(B, *self.chunk_shape)
        else:
            rng = np.random.default_rng(secrets.randbits(64) if seed is None else seed)
            x = rng.standard_normal((B, *self.chunk_shape))
        mem_k, mem_v = self._prefill(x_obs)
        for t in self.timesteps:
            eps = self.sess["denoise"].run(None, {"sample": x.astype(np.float32), "timestep": np.full(B, t, np.int64),
                                                  "mem_k": mem_k, "mem_v": mem_v})[0]
            x = ddim_step(eps.astype(np.float64), int(t), x, self.alphas, self.T, self.steps, self.clip)
        stats = {"tokens_used": None, "denoise_steps": self.steps}
        return self._finish(self._unnormalize(x).astype(np.float32), single, stats, return_stats)


class OatRunner:
    """An OAT bundle through the numpy + onnxruntime loop (oat_edge.ort_reference)."""

    def __init__(self, bundle, threads=1):
        from oat_edge.ort_reference import OrtBundle
        self.ort = OrtBundle(os.fspath(bundle), threads=threads)
        m = self.ort.m
        n, t, p = m["normalization"], m["tokenizer"], m["policy"]
        self.obs_shape = (p["n_obs_steps"], p["obs_dim"])
        self.last_stats = None
        self._info = {"kind": t["kind"], "bundle_dir": os.fspath(bundle), "horizon": t["horizon"],
                      "action_dim": t["action_dim"], "n_obs_steps": p["n_obs_steps"], "obs_dim": p["obs_dim"],
                      "n_action_steps": p["n_action_steps"], "num_tokens": t["num_tokens"],
                      "codebook_size": t["codebook_size"], "tasks": list(m.get("tasks") or []),
                      "action_low": n["action_low"], "action_high": n["action_high"],
                      "provider": "CPUExecutionProvider (Python loop)"}

    @property
    def info(self) -> dict:
        return dict(self._info)

    def check_options(self, max_tokens=None, temperature=None, top_k=None, seed=None, latency_budget_ms=None,
                      min_tokens=None):
        _check_options("OAT through the Python loop", self._info["num_tokens"], max_tokens, temperature, top_k,
                       seed, latency_budget_ms, min_tokens)

    def act(self, obs, max_tokens=None, temperature=None, top_k=None, seed=None, latency_budget_ms=None,
            return_stats=False, min_tokens=None):
        self.check_options(max_tokens, temperature, top_k, seed, latency_budget_ms, min_tokens)
        x, single = _obs_batch(obs, self.obs_shape)
        out = self.ort.act(x, max_tokens, temperature, top_k, secrets.randbits(64) if seed is None else seed)
        stats = {"tokens_used": int(max_tokens or self._info["num_tokens"])}
        self.last_stats = stats
        out = out[0] if single else out
        return (out, stats) if return_stats else out


def open_runner(bundle, threads: int = 1, denoise_steps: int | None = None):
    """A baseline bundle (baseline.json) or an OAT bundle (model.onnx) -> runner."""
    bundle = os.fspath(bundle)
    if os.path.isfile(os.path.join(bundle, MANIFEST_FILE)):
        m, bundle = load_baseline_manifest(bundle)
        if m["kind"] in ("fast", "bin"):
            return TokenRunner(m, bundle, threads)
        if m["kind"] == "diffusion":
            return DiffusionRunner(m, bundle, threads, denoise_steps)
        raise BundleError(f"{bundle}: kind {m['kind']!r}: expected 'fast', 'bin' or 'diffusion'")
    if os.path.isfile(os.path.join(bundle, "model.onnx")) or bundle.endswith(".onnx"):
        return OatRunner(bundle, threads)
    raise BundleError(f"{bundle!r}: expected a baseline bundle ({MANIFEST_FILE}) or an OAT bundle (model.onnx)")
