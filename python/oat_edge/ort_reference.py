"""A plain numpy + onnxruntime-from-Python implementation of the runtime loop (no C++, no torch).

It is the middle rung of the parity ladder (PyTorch -> onnxruntime Python -> C++ Policy), the
exporter's parity check and the "ORT Python loop" column of the benchmark. It follows
docs/DESIGN.md step by step (prefill, fixed-size KV cache, oat_edge.sampling, FSQ lookup, decode,
clamp, unnormalize) with numpy buffers allocated per call: simple on purpose, it is the
reference, not the fast path.
"""
from __future__ import annotations

import os

import numpy as np

from oat_edge import manifest as mf
from oat_edge import sampling


def fsq_ids_to_codes(ids, levels) -> np.ndarray:
    """numpy mirror of DESIGN.md §3 (what the C++ runtime does)."""
    levels = np.asarray(levels, dtype=np.int64)
    basis = np.concatenate([[1], np.cumprod(levels[:-1])]).astype(np.int64)
    half = levels // 2
    digits = (np.asarray(ids, dtype=np.int64)[..., None] // basis) % levels
    return ((digits - half) / half).astype(np.float32)


class OrtBundle:
    def __init__(self, bundle, threads: int = 1, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort

        self.m = mf.load_manifest(bundle)
        bundle_dir = bundle if os.path.isdir(bundle) else os.path.dirname(os.path.abspath(bundle))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = {g: ort.InferenceSession(os.path.join(bundle_dir, f), so, providers=list(providers))
                     for g, f in self.m["files"].items()}
        t, p = self.m["tokenizer"], self.m["policy"]
        self.K, self.levels, self.cb = t["num_tokens"], t["fsq_levels"], t["codebook_size"]
        self.cache_shape = (p["n_layers"], p["n_heads"], self.K, p["head_dim"])
        n = self.m["normalization"]
        self.obs_scale, self.obs_offset = np.float32(n["obs_scale"]), np.float32(n["obs_offset"])
        self.act_scale, self.act_offset = np.float32(n["action_scale"]), np.float32(n["action_offset"])
        self.temperature, self.top_k = self.m["sampling"]["temperature"], self.m["sampling"]["top_k"]

    # ---- the graphs, in normalized units -----------------------------------------------------
    def prefill(self, obs_norm):
        return self.sess["prefill"].run(None, {"obs": np.asarray(obs_norm, np.float32)})

    def step(self, token, t, past_k, past_v, mem_k, mem_v):
        return self.sess["step"].run(None, {"token": np.asarray(token, np.int64), "step": np.array([t], np.int64),
                                            "past_k": past_k, "past_v": past_v, "mem_k": mem_k, "mem_v": mem_v})

    def decode(self, codes, num_tokens):
        return self.sess["decoder"].run(None, {"codes": np.asarray(codes, np.float32),
                                               "num_tokens": np.asarray(num_tokens, np.int64)})[0]

    def encode(self, actions_norm):
        return self.sess["encoder"].run(None, {"actions": np.asarray(actions_norm, np.float32)})[0]

    def generate_norm(self, obs_norm, k=None, temperature=None, top_k=None, seed=0, return_logits=False):
        """obs_norm [B, T, obs_dim] -> ids [B, k] (and logits [B, k, vocab])."""
        k = self.K if k is None else k
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        B = obs_norm.shape[0]
        rng = sampling.SplitMix64(seed)
        mem_k, mem_v = self.prefill(obs_norm)
        L, H, K, Dh = self.cache_shape
        pk = np.zeros((L, B, H, K, Dh), np.float32)
        pv = np.zeros_like(pk)
        tok = np.full(B, self.cb, np.int64)
        ids, logits_all = [], []
        for t in range(k):
            logits, nk, nv = self.step(tok, t, pk, pv, mem_k, mem_v)
            pk[:, :, :, t:t + 1] = nk
            pv[:, :, :, t:t + 1] = nv
            tok = sampling.sample_batch(logits, self.cb, temperature, top_k, rng)
            ids.append(tok)
            logits_all.append(logits)
        ids = np.stack(ids, 1)
        return (ids, np.stack(logits_all, 1)) if return_logits else ids

    # ---- raw units, the same calls as oat_edge.Policy ---------------------------------------
    def _obs_norm(self, obs_raw):
        obs = np.asarray(obs_raw, np.float32)
        return (obs[None] if obs.ndim == 2 else obs) * self.obs_scale + self.obs_offset, obs.ndim == 2

    def generate(self, obs_raw, max_tokens=None, temperature=None, top_k=None, seed=0):
        obs, single = self._obs_norm(obs_raw)
        ids = self.generate_norm(obs, max_tokens, temperature, top_k, seed)
        return ids[0] if single else ids

    def detokenize(self, ids, k=None):
        ids = np.asarray(ids, np.int64)
        B, n = ids.shape
        k = n if k is None else k
        full = np.zeros((B, self.K), np.int64)
        full[:, :k] = ids[:, :k]
        a = self.decode(fsq_ids_to_codes(full, self.levels), np.full(B, k, np.int64))
        return (np.clip(a, -1, 1) - self.act_offset) / self.act_scale

    def act(self, obs_raw, max_tokens=None, temperature=None, top_k=None, seed=0):
        obs, single = self._obs_norm(obs_raw)
        out = self.detokenize(self.generate_norm(obs, max_tokens, temperature, top_k, seed), max_tokens)
        return out[0] if single else out
