"""The parity ladder for named-input (camera) bundles: PyTorch -> onnxruntime-Python -> C++.

Inputs are what a robot passes: raw state and uint8 frames, at batch 1 and 3. The PyTorch side is
the encoder and policy the bundle was exported from; the onnxruntime side runs the bundle's graphs
by name (NamedOrtBundle, the numpy reference loop of oat_edge.ort_reference with a named
prefill); the C++ side is `oat_edge.Policy.act(dict)`.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from oat_edge import sampling
from oat_edge.ort_reference import OrtBundle, fsq_ids_to_codes

from .named_prefill import example_inputs
from .parity import _rel

BATCHES = (1, 3)


class NamedOrtBundle(OrtBundle):
    """OrtBundle over a named-input bundle: prefill takes {name: array}; no host obs normalization."""

    def __init__(self, bundle, threads: int = 1):
        import onnxruntime as ort
        from oat_edge import manifest as mf

        self.m = mf.load_manifest(bundle)  # every check the C++ loader makes
        bundle_dir = mf.entry_path(bundle)[0]
        if "observation" not in self.m:
            raise ValueError(f"{bundle_dir}: expected a named-input bundle (manifest with 'observation'), "
                             "got a state bundle: use oat_edge.ort_reference.OrtBundle")
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        self.sess = {g: ort.InferenceSession(os.path.join(bundle_dir, f), so, providers=["CPUExecutionProvider"])
                     for g, f in self.m["files"].items()}
        t, p, n = self.m["tokenizer"], self.m["policy"], self.m["normalization"]
        self.K, self.levels, self.cb = t["num_tokens"], t["fsq_levels"], t["codebook_size"]
        self.cache_shape = (p["n_layers"], p["n_heads"], self.K, p["head_dim"])
        self.act_scale, self.act_offset = np.float32(n["action_scale"]), np.float32(n["action_offset"])
        self.temperature, self.top_k = self.m["sampling"]["temperature"], self.m["sampling"]["top_k"]
        self.names = [i["name"] for i in self.m["observation"]["inputs"]]

    def prefill(self, obs):
        return self.sess["prefill"].run(None, {n: np.asarray(obs[n]) for n in self.names})

    def generate_norm(self, obs, k=None, temperature=None, top_k=None, seed=0, return_logits=False):
        """obs {name: [B, S, ...]} -> ids [B, k] (and logits [B, k, vocab])."""
        k = self.K if k is None else k
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        B = len(obs[self.names[0]])
        rng = sampling.SplitMix64(seed)
        mem_k, mem_v = self.prefill(obs)
        pk = np.zeros((self.cache_shape[0], B, *self.cache_shape[1:]), np.float32)
        pv = np.zeros_like(pk)
        tok = np.full(B, self.cb, np.int64)
        ids, logits_all = [], []
        for t in range(k):
            logits, nk, nv = self.step(tok, t, pk, pv, mem_k, mem_v)
            pk[:, :, :, t:t + 1], pv[:, :, :, t:t + 1] = nk, nv
            tok = sampling.sample_batch(logits, self.cb, temperature, top_k, rng)
            ids.append(tok)
            logits_all.append(logits)
        ids = np.stack(ids, 1)
        return (ids, np.stack(logits_all, 1)) if return_logits else ids

    def generate(self, obs, max_tokens=None, temperature=None, top_k=None, seed=0):
        """Batched named inputs -> ids [B, k] (the graph normalizes: nothing to do on the host)."""
        return self.generate_norm(obs, max_tokens, temperature, top_k, seed)

    def act(self, obs, max_tokens=None, temperature=None, top_k=None, seed=0):
        """Batched named inputs -> raw actions [B, H_a, D_a]."""
        return self.detokenize(self.generate_norm(obs, max_tokens, temperature, top_k, seed), max_tokens)


def _cpp_rung(bundle_dir, feeds, want_actions, act_scale) -> dict:
    """oat_edge.Policy.act(dict) against the onnxruntime-Python actions; skipped (saying why) only
    where there is no C++ runtime or it predates named inputs, an error otherwise."""
    import dataclasses
    import importlib.util

    if importlib.util.find_spec("oat_edge._core") is None:
        return {"skipped": "the C++ core (oat_edge._core) is not built here"}
    import oat_edge
    from oat_edge.policy_info import PolicyInfo

    if "observation" not in {f.name for f in dataclasses.fields(PolicyInfo)}:
        return {"skipped": "this oat_edge runtime predates named inputs (PolicyInfo has no 'observation')"}
    err = 0.0
    try:
        policy = oat_edge.Policy(bundle_dir, threads=1)
        for feed, want in zip(feeds, want_actions):
            got = policy.act(feed, temperature=0.0)
            err = max(err, float(np.max(np.abs((np.asarray(got) - want) * act_scale))))
    except Exception as exc:  # BundleError, InputError, a binding's TypeError: all mean no parity
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"act_max_abs_err_norm": err}


@torch.no_grad()
def check_named_parity(token_policy, encoder, out_dir, rtol=1e-4, atol_actions=1e-4, seed=0) -> dict:
    """PyTorch vs onnxruntime (vs C++) on random raw state and uint8 frames at batch 1 and 3."""
    from oat_edge.train.observation import ObservationPrefill

    tp, enc = token_policy.cpu().eval(), encoder.cpu().eval()
    pol, spec = tp.policy, enc.spec
    prefill = ObservationPrefill(enc, pol).eval()
    ob = NamedOrtBundle(out_dir)
    r = {"batches": list(BATCHES), "prefill_rel_err": 0.0, "generate_logits_rel_err": 0.0,
         "greedy_tokens_equal": True, "act_max_abs_err_norm": 0.0}
    args_all = example_inputs(spec, batch=max(BATCHES), seed=seed)
    feeds, ort_actions = [], []
    for B in BATCHES:
        args = tuple(a[:B] for a in args_all)
        feed = {n: a.numpy() for n, a in zip(spec.names, args)}
        mk_t, mv_t = prefill(*args)
        mk_o, mv_o = ob.prefill(feed)
        r["prefill_rel_err"] = max(r["prefill_rel_err"], _rel(mk_o, mk_t), _rel(mv_o, mv_t))
        features = enc.encode(*args)
        ids_t = pol.generate(features, temperature=0.0)
        ids_o, logits_o = ob.generate_norm(feed, temperature=0.0, return_logits=True)
        r["greedy_tokens_equal"] &= bool(np.array_equal(ids_t.numpy(), ids_o))
        r["generate_logits_rel_err"] = max(r["generate_logits_rel_err"], _rel(logits_o, pol(features, ids_t)))
        act_t = tp.predict(features, temperature=0.0).numpy()  # identity obs normalization
        act_o = ob.act(feed, temperature=0.0)
        r["act_max_abs_err_norm"] = max(r["act_max_abs_err_norm"],
                                        float(np.max(np.abs((act_o - act_t) * ob.act_scale))))
        feeds.append(feed)
        ort_actions.append(act_o)
    r["cpp"] = _cpp_rung(out_dir, feeds, ort_actions, ob.act_scale)
    cpp_ok = "skipped" in r["cpp"] or r["cpp"].get("act_max_abs_err_norm", np.inf) <= atol_actions
    r["ok"] = bool(r["prefill_rel_err"] <= rtol and r["greedy_tokens_equal"]
                   and r["generate_logits_rel_err"] <= rtol and r["act_max_abs_err_norm"] <= atol_actions and cpp_ok)
    return r


def named_variant_error(encoder, ref_dir, var_dir, batch=8, seed=0) -> dict:
    """Measured error of a converted (fp16/int8) named-input bundle vs its fp32 bundle."""
    ref, var = NamedOrtBundle(ref_dir), NamedOrtBundle(var_dir)
    feed = {n: a.numpy() for n, a in zip(encoder.spec.names, example_inputs(encoder.spec, batch, seed))}
    ids_r = ref.generate_norm(feed, temperature=0.0)
    ids_v = var.generate_norm(feed, temperature=0.0)
    mem_r, mem_v = ref.prefill(feed), var.prefill(feed)
    a_r = ref.detokenize(ids_r)
    k = np.full(batch, ref.K, np.int64)
    codes = fsq_ids_to_codes(ids_r, ref.levels)
    return {
        "greedy_token_agreement": float(np.mean(ids_r == ids_v)),
        "prefill_rel_err": max(_rel(mem_v[0], mem_r[0]), _rel(mem_v[1], mem_r[1])),
        "decoder_max_abs_err_norm": float(np.max(np.abs(var.decode(codes, k) - ref.decode(codes, k)))),
        "greedy_action_max_abs_err": float(np.max(np.abs(var.detokenize(ids_v) - a_r))),
        "greedy_action_rmse": float(np.sqrt(np.mean((var.detokenize(ids_v) - a_r) ** 2))),
        "action_half_range": [float(x) for x in np.atleast_1d(np.float32(1.0) / ref.act_scale)],
    }
