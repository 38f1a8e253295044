"""Write an oat_edge bundle: model.onnx (step graph + manifest), policy_prefill.onnx,
decoder.onnx, encoder.onnx. The graphs wrap the very methods used in training/inference
(ARPolicy.step / .prefill, OATTokenizer.decoder / .encode), so there is no second model."""
import json
import os
import shutil
import tempfile
import warnings

import onnx
import torch
import torch.nn as nn

from oat_edge import manifest as mf
from oat_edge.train.tokenizer import OATTokenizer

from .parity import check_parity, variant_error
from .quantize import convert_bundle


class StepGraph(nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.p = policy

    def forward(self, token, step, past_k, past_v, mem_k, mem_v):
        return self.p.step(token, step, past_k, past_v, mem_k, mem_v)


class PrefillGraph(nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.p = policy

    def forward(self, obs):
        return self.p.prefill(obs)


class DecoderGraph(nn.Module):
    def __init__(self, tok):
        super().__init__()
        self.t = tok

    def forward(self, codes, num_tokens):
        return self.t.decoder(codes, num_tokens)


class EncoderGraph(nn.Module):
    def __init__(self, tok):
        super().__init__()
        self.t = tok

    def forward(self, actions):
        return self.t.encode(actions)[1]


def _export(module, args, path, inputs, outputs, dynamic, opset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: intended
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter chosen on purpose (dynamo=False)
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(path))


def write_manifest(model_path, d):
    m = onnx.load(model_path)
    del m.metadata_props[:]
    m.metadata_props.add(key=mf.MANIFEST_KEY, value=mf.to_json(d))
    onnx.save(m, model_path)
    onnx.checker.check_model(model_path)


def manifest_for(tp, precision="fp32", tasks=(), obs_layout=""):
    tok, c = tp.tokenizer, tp.policy.cfg
    an, on = tok.normalizer, tp.obs_normalizer
    return mf.build_manifest(
        kind=tok.kind, num_tokens=tok.num_tokens, fsq_levels=tok.cfg.fsq_levels, horizon=tok.horizon,
        action_dim=tok.action_dim, n_layers=c.n_layers, n_heads=c.n_heads, head_dim=c.head_dim,
        n_obs_steps=c.n_obs_steps, obs_dim=c.obs_dim, n_action_steps=c.n_action_steps,
        obs_scale=on.scale.tolist(), obs_offset=on.offset.tolist(),
        action_scale=an.scale.tolist(), action_offset=an.offset.tolist(),
        action_low=an.low.tolist(), action_high=an.high.tolist(),
        has_encoder=True, precision=precision, tasks=tasks, obs_layout=obs_layout)


def export_fp32(tp, out_dir, tasks=(), obs_layout="", opset=17):
    """Export the four fp32 graphs + manifest into out_dir; returns the manifest."""
    tok, pol = tp.tokenizer, tp.policy
    if not isinstance(tok, OATTokenizer):
        raise ValueError(f"tokenizer.kind: expected an OAT-kind tokenizer {list(mf.OAT_KINDS)}, got "
                         f"'{getattr(tok, 'kind', type(tok).__name__)}' (only OAT tokenizers are exportable)")
    os.makedirs(out_dir, exist_ok=True)
    tp = tp.cpu().eval()
    c = pol.cfg
    B = 2
    L, H, K, Dh, T = c.n_layers, c.n_heads, c.num_tokens, c.head_dim, c.n_obs_steps
    b = {0: "B"}
    cache = torch.zeros(L, B, H, K, Dh)
    mem = torch.zeros(L, B, H, T, Dh)
    with torch.no_grad():
        _export(StepGraph(pol), (torch.zeros(B, dtype=torch.long), torch.tensor([1]), cache, cache, mem, mem),
                os.path.join(out_dir, mf.FILES["step"]), mf.IO["step"]["inputs"], mf.IO["step"]["outputs"],
                {"token": b, "past_k": {1: "B"}, "past_v": {1: "B"}, "mem_k": {1: "B"}, "mem_v": {1: "B"},
                 "logits": b, "new_k": {1: "B"}, "new_v": {1: "B"}}, opset)
        _export(PrefillGraph(pol), (torch.zeros(B, T, c.obs_dim),), os.path.join(out_dir, mf.FILES["prefill"]),
                mf.IO["prefill"]["inputs"], mf.IO["prefill"]["outputs"],
                {"obs": b, "mem_k": {1: "B"}, "mem_v": {1: "B"}}, opset)
        _export(DecoderGraph(tok), (torch.zeros(B, K, tok.code_dim), torch.tensor([1, K])),
                os.path.join(out_dir, mf.FILES["decoder"]), mf.IO["decoder"]["inputs"], mf.IO["decoder"]["outputs"],
                {"codes": b, "num_tokens": b, "actions": b}, opset)
        _export(EncoderGraph(tok), (torch.zeros(B, tok.horizon, tok.action_dim),),
                os.path.join(out_dir, mf.FILES["encoder"]), mf.IO["encoder"]["inputs"], mf.IO["encoder"]["outputs"],
                {"actions": b, "ids": b}, opset)
    d = manifest_for(tp, "fp32", tasks, obs_layout)
    write_manifest(os.path.join(out_dir, mf.ENTRY_FILE), d)
    return mf.validate(d, out_dir)


def export_bundle(token_policy, out_dir, tasks=(), obs_layout="", opset=17, precision="fp32",
                  check_parity=True, variants=()):
    """Export `token_policy` as a bundle of `precision` into out_dir.

    fp16/int8 bundles are converted from an fp32 export (kept in a temp dir) and the report
    carries their measured error vs fp32. `variants` adds sibling bundles `<out_dir>_<p>`.
    """
    for p in (precision, *variants):
        if p not in mf.PRECISIONS:
            raise ValueError(f"precision: expected one of {list(mf.PRECISIONS)}, got {p!r}")
    if opset < 17:
        raise ValueError(f"opset: expected >= 17, got {opset}")
    out_dir = os.fspath(out_dir)
    report = {"out_dir": out_dir, "precision": precision, "opset": opset}
    tmp = tempfile.mkdtemp(prefix="oat_export_")
    try:
        ref_dir = out_dir if precision == "fp32" else os.path.join(tmp, "fp32")
        d = export_fp32(token_policy, ref_dir, tasks, obs_layout, opset)
        report["files"] = dict(d["files"])
        if check_parity:
            report["parity"] = check_parity_fn(token_policy, ref_dir)
            report["ok"] = report["parity"]["ok"]
        targets = [] if precision == "fp32" else [(precision, out_dir)]
        targets += [(p, out_dir.rstrip("/\\") + "_" + p) for p in variants if p != "fp32"]
        report["variants"] = {}
        for p, dst in targets:
            convert_bundle(ref_dir, dst, p)
            err = variant_error(token_policy, ref_dir, dst)
            report["variants"][p] = {"dir": dst, **err}
        for p in variants:
            if p == "fp32" and precision != "fp32":
                dst = out_dir.rstrip("/\\") + "_fp32"
                shutil.copytree(ref_dir, dst, dirs_exist_ok=True)
                report["variants"]["fp32"] = {"dir": dst}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["bytes"] = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))
                       if f.endswith(".onnx")}
    with open(os.path.join(out_dir, "export_report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    return report


check_parity_fn = check_parity  # the keyword argument `check_parity` shadows the function above
