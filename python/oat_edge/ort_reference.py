"""A plain onnxruntime-from-Python implementation of the runtime loop (no C++, no torch).

It is the middle rung of the parity ladder (PyTorch -> onnxruntime Python -> C++ Policy) and the
"ORT Python loop" column of the benchmark. It follows docs/DESIGN.md exactly, with numpy buffers
allocated per call: simple on purpose, it is the reference, not the fast path.
"""
from __future__ import annotations

import os
import time

import numpy as np

from oat_edge.manifest import load_manifest
from oat_edge.sampling import SplitMix64, sample_batch


def _fsq_ids_to_codes(ids: np.ndarray, levels) -> np.ndarray:
    levels = np.asarray(levels, dtype=np.int64)
    basis = np.concatenate([[1], np.cumprod(levels[:-1])]).astype(np.int64)
    half = (levels // 2).astype(np.float32)
    digits = (ids[..., None] // basis) % levels
    return ((digits - half) / half).astype(np.float32)


class OrtPythonPolicy:
    def __init__(self, path: str, threads: int = 1, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort

        self.manifest = load_manifest(path)
        self.dir = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        files = self.manifest["files"]

        def session(key):
            return ort.InferenceSession(os.path.join(self.dir, files[key]), opts, providers=list(providers))

        self.step_sess, self.prefill_sess, self.decoder_sess = session("step"), session("prefill"), session("decoder")
        tok, pol, norm = self.manifest["tokenizer"], self.manifest["policy"], self.manifest["normalization"]
        self.K, self.codebook, self.levels = tok["num_tokens"], tok["codebook_size"], tok["fsq_levels"]
        self.L, self.H, self.Dh = pol["n_layers"], pol["n_heads"], pol["head_dim"]
        self.bos = pol["bos_id"]
        self.obs_scale = np.asarray(norm["obs_scale"], np.float32)
        self.obs_offset = np.asarray(norm["obs_offset"], np.float32)
        self.act_scale = np.asarray(norm["action_scale"], np.float32)
        self.act_offset = np.asarray(norm["action_offset"], np.float32)
        self.graph_ms = 0.0  # ORT time of the last act()

    def _run(self, sess, feeds):
        t = time.perf_counter()
        out = sess.run(None, feeds)
        self.graph_ms += (time.perf_counter() - t) * 1e3
        return out

    def generate(self, obs: np.ndarray, max_tokens=None, temperature=0.0, top_k=0, seed=0) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if obs.ndim == 2:
            obs = obs[None]
        k = self.K if max_tokens is None else int(max_tokens)
        B = obs.shape[0]
        self.graph_ms = 0.0
        mem_k, mem_v = self._run(self.prefill_sess, {"obs": obs * self.obs_scale + self.obs_offset})
        past_k = np.zeros((self.L, B, self.H, self.K, self.Dh), np.float32)
        past_v = np.zeros_like(past_k)
        token = np.full((B,), self.bos, np.int64)
        rng = SplitMix64(seed)
        ids = np.zeros((B, k), np.int64)
        for t in range(k):
            logits, new_k, new_v = self._run(self.step_sess, {
                "token": token, "step": np.array([t], np.int64), "past_k": past_k, "past_v": past_v,
                "mem_k": mem_k, "mem_v": mem_v})
            past_k[:, :, :, t] = new_k[:, :, :, 0]
            past_v[:, :, :, t] = new_v[:, :, :, 0]
            token = np.asarray(sample_batch(logits, self.codebook, temperature, top_k, rng), np.int64)
            ids[:, t] = token
        return ids

    def detokenize(self, ids: np.ndarray) -> np.ndarray:
        B, k = ids.shape
        codes = np.zeros((B, self.K, len(self.levels)), np.float32)
        codes[:, :k] = _fsq_ids_to_codes(ids, self.levels)
        (actions,) = self._run(self.decoder_sess, {"codes": codes, "num_tokens": np.full((B,), k, np.int64)})
        actions = np.clip(actions, -1.0, 1.0)
        return (actions - self.act_offset) / self.act_scale

    def act(self, obs, max_tokens=None, temperature=0.0, top_k=0, seed=0) -> np.ndarray:
        single = np.asarray(obs).ndim == 2
        graph_ms = 0.0
        ids = self.generate(obs, max_tokens, temperature, top_k, seed)
        graph_ms = self.graph_ms
        out = self.detokenize(ids)
        self.graph_ms += graph_ms
        return out[0] if single else out
