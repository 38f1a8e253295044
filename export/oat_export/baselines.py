"""Export the comparison baselines as ONNX bundles that oat_edge.baselines.runners runs.

A baseline bundle is a directory with `baseline.json` (what the runner needs besides the
graphs: shapes, normalizers, tokenizer tables or the diffusion schedule) and its graphs:

    token policies (FAST, Bin)  prefill.onnx  obs -> mem_k, mem_v
                                step.onnx     one KV-cached position (the OAT step graph's I/O)
    Diffusion Policy            prefill.onnx  obs -> mem_k, mem_v
                                denoise.onnx  (sample, timestep, mem_k, mem_v) -> noise

The token policies are the same ARPolicy as OAT's, exported through the same StepGraph and
PrefillGraph wrappers, so the per-token cost of every token policy is one identical graph run.

    python -m oat_export.baselines --checkpoint runs/fast/policy.pt --out runs/fast_bundle
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
from oat_edge import manifest as mf
from oat_edge.atomic import OutputError, atomic_dir

from .export import PrefillGraph, StepGraph, _export, check_replaceable

FORMAT = "oat_edge.baseline"
FORMAT_VERSION = 1
MANIFEST_FILE = "baseline.json"
FILES = {"prefill": "prefill.onnx", "step": "step.onnx", "denoise": "denoise.onnx"}


class DenoiseGraph(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, sample, timestep, mem_k, mem_v):
        return self.net.denoise(sample, timestep, mem_k, mem_v)


def _floats(t) -> list[float]:
    return [float(x) for x in torch.as_tensor(t).reshape(-1).tolist()]


def _normalization(obs_norm, act_norm) -> dict:
    return {"obs_scale": _floats(obs_norm.scale), "obs_offset": _floats(obs_norm.offset),
            "action_scale": _floats(act_norm.scale), "action_offset": _floats(act_norm.offset),
            "action_low": _floats(act_norm.low), "action_high": _floats(act_norm.high)}


def _export_token_graphs(policy, out_dir: str, opset: int) -> None:
    c = policy.cfg
    B = 2
    cache = torch.zeros(c.n_layers, B, c.n_heads, c.num_tokens, c.head_dim)
    mem = torch.zeros(c.n_layers, B, c.n_heads, c.n_obs_steps, c.head_dim)
    b = {0: "B"}
    _export(StepGraph(policy), (torch.zeros(B, dtype=torch.long), torch.tensor([1]), cache, cache, mem, mem),
            os.path.join(out_dir, FILES["step"]), mf.IO["step"]["inputs"], mf.IO["step"]["outputs"],
            {"token": b, "past_k": {1: "B"}, "past_v": {1: "B"}, "mem_k": {1: "B"}, "mem_v": {1: "B"},
             "logits": b, "new_k": {1: "B"}, "new_v": {1: "B"}}, opset)
    _export(PrefillGraph(policy), (torch.zeros(B, c.n_obs_steps, c.obs_dim),),
            os.path.join(out_dir, FILES["prefill"]), mf.IO["prefill"]["inputs"], mf.IO["prefill"]["outputs"],
            {"obs": b, "mem_k": {1: "B"}, "mem_v": {1: "B"}}, opset)


def _token_manifest(kind, policy, obs_norm, act_norm, horizon, action_dim, tasks, obs_layout, extra) -> dict:
    c = policy.cfg
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
            "files": {"prefill": FILES["prefill"], "step": FILES["step"]},
            "horizon": int(horizon), "action_dim": int(action_dim), "n_obs_steps": c.n_obs_steps,
            "obs_dim": c.obs_dim, "n_action_steps": c.n_action_steps, "tasks": list(tasks),
            "obs_layout": obs_layout,
            "policy": {"num_tokens": c.num_tokens, "codebook_size": c.codebook_size, "bos_id": c.bos_id,
                       "n_layers": c.n_layers, "n_heads": c.n_heads, "head_dim": c.head_dim},
            "sampling": {"temperature": 1.0, "top_k": 10},  # the OAT bundles' defaults
            "normalization": _normalization(obs_norm, act_norm), kind: extra}


def export_fast(fp, out_dir, tasks=(), obs_layout="", opset=17) -> dict:
    """FASTPolicy -> bundle. The BPE merge table travels in baseline.json."""
    tok = fp.tokenizer
    ck = tok.checkpoint()
    extra = {"vocab_size": tok.vocab_size, "max_tokens": tok.max_tokens, "eos_id": tok.eos_id,
             "dct_scale": tok.scale, "min_coef": ck["min_coef"], "n_base": ck["n_base"],
             "merges": ck["merges"]}
    m = _token_manifest("fast", fp.policy, fp.obs_normalizer, tok.normalizer, tok.horizon, tok.action_dim,
                        tasks, obs_layout, extra)
    return _write(out_dir, m, lambda d: _export_token_graphs(fp.policy, d, opset))


def export_bin(tp, out_dir, tasks=(), obs_layout="", opset=17) -> dict:
    """TokenPolicy over a BinTokenizer -> bundle."""
    tok = tp.tokenizer
    if getattr(tok, "kind", None) != "bin":
        raise ValueError(f"tokenizer kind: expected 'bin', got {getattr(tok, 'kind', type(tok).__name__)!r}")
    m = _token_manifest("bin", tp.policy, tp.obs_normalizer, tok.normalizer, tok.horizon, tok.action_dim,
                        tasks, obs_layout, {"bins": tok.bins})
    return _write(out_dir, m, lambda d: _export_token_graphs(tp.policy, d, opset))


def export_diffusion(dp, out_dir, tasks=(), obs_layout="", opset=17) -> dict:
    """DiffusionChunkPolicy -> bundle. The DDIM arithmetic needs only alphas_cumprod, taken from
    the diffusers scheduler the model was trained with."""
    from oat_edge.baselines.diffusion_policy import ddpm_scheduler, scheduler_config
    net, c = dp.net.eval(), dp.net.cfg
    sched = scheduler_config(c)
    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "diffusion",
         "files": {"prefill": FILES["prefill"], "denoise": FILES["denoise"]},
         "horizon": c.horizon, "action_dim": c.action_dim, "n_obs_steps": c.n_obs_steps, "obs_dim": c.obs_dim,
         "n_action_steps": c.n_action_steps, "tasks": list(tasks), "obs_layout": obs_layout,
         "policy": {"n_layers": c.n_layers, "n_heads": c.n_heads, "head_dim": c.head_dim},
         "normalization": _normalization(dp.obs_normalizer, dp.action_normalizer),
         "diffusion": {"train_timesteps": c.train_timesteps, "inference_steps": c.inference_steps,
                       "beta_schedule": c.beta_schedule, "prediction_type": sched["prediction_type"],
                       "clip_sample_range": 1.0,
                       "alphas_cumprod": [float(x) for x in ddpm_scheduler(c).alphas_cumprod.tolist()]}}

    def graphs(d):
        B = 2
        mem = torch.zeros(c.n_layers, B, c.n_heads, c.n_obs_steps, c.head_dim)
        b = {0: "B"}
        _export(PrefillGraph(net), (torch.zeros(B, c.n_obs_steps, c.obs_dim),), os.path.join(d, FILES["prefill"]),
                mf.IO["prefill"]["inputs"], mf.IO["prefill"]["outputs"],
                {"obs": b, "mem_k": {1: "B"}, "mem_v": {1: "B"}}, opset)
        _export(DenoiseGraph(net), (torch.zeros(B, c.horizon, c.action_dim), torch.zeros(B, dtype=torch.long),
                                    mem, mem),
                os.path.join(d, FILES["denoise"]), ["sample", "timestep", "mem_k", "mem_v"], ["noise"],
                {"sample": b, "timestep": b, "mem_k": {1: "B"}, "mem_v": {1: "B"}, "noise": b}, opset)
    return _write(out_dir, m, graphs)


def _write(out_dir, manifest: dict, write_graphs) -> dict:
    check_replaceable(out_dir, (*FILES.values(), MANIFEST_FILE))
    with torch.no_grad(), atomic_dir(out_dir) as d:
        write_graphs(d)
        with open(os.path.join(d, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=1)
    return manifest


def export_checkpoint(path, out_dir, opset=17) -> dict:
    """Any baseline checkpoint (FAST, Bin token policy, Diffusion Policy) -> bundle."""
    from oat_edge.train.checkpoint import load_checkpoint
    ck = load_checkpoint(path, what="checkpoint")  # tensors and plain data only, or refused
    tasks, layout = ck.get("tasks", []), ck.get("obs_layout", "")
    kind = ck.get("kind") or (ck.get("tokenizer") or {}).get("kind")
    if kind == "fast_policy":
        from oat_edge.baselines.fast_policy import FASTPolicy
        return export_fast(FASTPolicy.from_checkpoint(ck), out_dir, tasks, layout, opset)
    if kind == "diffusion_policy":
        from oat_edge.baselines.diffusion_policy import DiffusionChunkPolicy
        return export_diffusion(DiffusionChunkPolicy.from_checkpoint(ck), out_dir, tasks, layout, opset)
    if kind == "bin":
        from oat_edge.train.policy import TokenPolicy
        return export_bin(TokenPolicy.from_checkpoint(ck), out_dir, tasks, layout, opset)
    raise ValueError(f"{path}: expected a FAST, Bin or Diffusion Policy checkpoint, got kind {kind!r} "
                     "(OAT, OATX and OAT-without-causal-registers policies export with `oat-edge export`)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="oat_export.baselines", description="export a baseline policy bundle")
    ap.add_argument("--checkpoint", required=True, help="policy.pt of a FAST, Bin or Diffusion Policy run")
    ap.add_argument("--out", required=True, help="bundle directory to write")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not os.path.isfile(args.checkpoint):
        print(f"oat_export.baselines: error: checkpoint {args.checkpoint!r} not found", file=sys.stderr)
        return 2
    try:
        m = export_checkpoint(args.checkpoint, args.out, args.opset)
    except (OutputError, ValueError) as exc:
        print(f"oat_export.baselines: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({m['kind']}: {', '.join(m['files'].values())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
