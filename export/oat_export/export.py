"""Write an oat_edge bundle: model.onnx (step graph + manifest), policy_prefill.onnx,
decoder.onnx, encoder.onnx. The graphs wrap the very methods used in training/inference
(ARPolicy.step / .prefill, OATTokenizer.decoder / .encode), so there is no second model."""
import os
import shutil
import tempfile
import warnings

import onnx
import torch
import torch.nn as nn
from oat_edge import manifest as mf
from oat_edge.atomic import OutputError, atomic_path, check_output_dir, replace_dir, write_json
from oat_edge.train.tokenizer import OATTokenizer

from .named_parity import check_named_parity, named_variant_error
from .named_prefill import export_named_prefill, named_manifest
from .parity import check_parity, variant_error
from .quantize import convert_bundle

OPSET = 17  # the lowest opset the runtime's graphs are checked against


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
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: intended
            warnings.simplefilter("ignore", DeprecationWarning)  # legacy exporter chosen on purpose (dynamo=False)
            torch.onnx.export(module, args, tmp, input_names=inputs, output_names=outputs,
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)
        onnx.checker.check_model(onnx.load(tmp))


def write_manifest(model_path, d):
    m = onnx.load(model_path)
    del m.metadata_props[:]
    m.metadata_props.add(key=mf.MANIFEST_KEY, value=mf.to_json(d))
    with atomic_path(model_path) as tmp:
        onnx.save(m, tmp)
        onnx.checker.check_model(tmp)


def manifest_for(tp, precision="fp32", tasks=(), obs_layout="", observation_encoder=None):
    """The bundle's manifest; with an observation encoder, a named-input bundle's."""
    tok, c = tp.tokenizer, tp.policy.cfg
    an, on = tok.normalizer, tp.obs_normalizer
    d = mf.build_manifest(
        kind=tok.kind, num_tokens=tok.num_tokens, fsq_levels=tok.cfg.fsq_levels, horizon=tok.horizon,
        action_dim=tok.action_dim, n_layers=c.n_layers, n_heads=c.n_heads, head_dim=c.head_dim,
        n_obs_steps=c.n_obs_steps, obs_dim=c.obs_dim, n_action_steps=c.n_action_steps,
        obs_scale=on.scale.tolist(), obs_offset=on.offset.tolist(),
        action_scale=an.scale.tolist(), action_offset=an.offset.tolist(),
        action_low=an.low.tolist(), action_high=an.high.tolist(),
        has_encoder=True, precision=precision, tasks=tasks, obs_layout=obs_layout,
        control_hz=getattr(tp, "control_hz", None))
    if observation_encoder is None:
        return d
    return mf.validate(named_manifest(d, observation_encoder.spec))


def export_fp32(tp, out_dir, tasks=(), obs_layout="", opset=OPSET, observation_encoder=None):
    """Export the four fp32 graphs + manifest into out_dir; returns the manifest. With an
    observation encoder the prefill graph takes the spec's named inputs (named_prefill.py)."""
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
        if observation_encoder is not None:
            export_named_prefill(observation_encoder, pol, os.path.join(out_dir, mf.FILES["prefill"]), opset)
        else:
            _export(PrefillGraph(pol), (torch.zeros(B, T, c.obs_dim),), os.path.join(out_dir, mf.FILES["prefill"]),
                    mf.IO["prefill"]["inputs"], mf.IO["prefill"]["outputs"],
                    {"obs": b, "mem_k": {1: "B"}, "mem_v": {1: "B"}}, opset)
        _export(DecoderGraph(tok), (torch.zeros(B, K, tok.code_dim), torch.tensor([1, K])),
                os.path.join(out_dir, mf.FILES["decoder"]), mf.IO["decoder"]["inputs"], mf.IO["decoder"]["outputs"],
                {"codes": b, "num_tokens": b, "actions": b}, opset)
        _export(EncoderGraph(tok), (torch.zeros(B, tok.horizon, tok.action_dim),),
                os.path.join(out_dir, mf.FILES["encoder"]), mf.IO["encoder"]["inputs"], mf.IO["encoder"]["outputs"],
                {"actions": b, "ids": b}, opset)
    from .stamp import stamp_files  # late import: `python -m oat_export.stamp` must find it unloaded

    d = manifest_for(tp, "fp32", tasks, obs_layout, observation_encoder)
    stamp_files(out_dir, d)
    write_manifest(os.path.join(out_dir, mf.ENTRY_FILE), d)
    return mf.validate(d, out_dir)


def export_bundle(token_policy, out_dir, tasks=(), obs_layout="", opset=OPSET, precision="fp32",
                  check_parity=True, variants=(), observation_encoder=None):
    """Export `token_policy` as a bundle of `precision` into out_dir.

    With `observation_encoder` (a pixel policy) the bundle takes named inputs: the prefill graph
    is ObservationPrefill(encoder, policy) and the manifest carries the encoder's spec.

    fp16/int8 bundles are converted from an fp32 export and the report carries their measured
    error vs fp32. `variants` adds sibling bundles `<out_dir>_<p>`. Everything is built in a
    hidden work directory beside out_dir and each bundle replaces the old one in one rename only
    once all of them are complete and parity holds: a failed, failing-parity or interrupted export
    leaves the previous bundles as they were.
    """
    for p in (precision, *variants):
        if p not in mf.PRECISIONS:
            raise ValueError(f"precision: expected one of {list(mf.PRECISIONS)}, got {p!r}")
    if opset < OPSET:
        raise ValueError(f"opset: expected >= {OPSET}, got {opset}")
    out_dir = os.fspath(out_dir).rstrip("/\\") or os.fspath(out_dir)
    targets = {precision: out_dir}
    targets.update({p: f"{out_dir}_{p}" for p in variants if p != precision})
    for dst in targets.values():
        check_output_dir(dst, force=True, flag="--out")  # a bundle is meant to be re-exported
        check_replaceable(dst)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    report = {"out_dir": out_dir, "precision": precision, "opset": opset}
    try:
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.export.", dir=parent)
    except OSError as exc:
        raise OutputError(f"--out: cannot create a work directory in {parent}: {exc.strerror}") from None
    try:
        staged = {p: os.path.join(work, p) for p in targets}
        ref_dir = os.path.join(work, "fp32")
        enc = observation_encoder
        d = export_fp32(token_policy, ref_dir, tasks, obs_layout, opset, enc)
        report["files"] = dict(d["files"])
        if check_parity:
            report["parity"] = (check_parity_fn(token_policy, ref_dir) if enc is None
                                else check_named_parity(token_policy, enc, ref_dir))
            report["ok"] = report["parity"]["ok"]
        report["variants"] = {}
        for p, dst in targets.items():
            if p != "fp32":
                convert_bundle(ref_dir, staged[p], p)
                report["variants"][p] = {"dir": dst, **(
                    variant_error(token_policy, ref_dir, staged[p]) if enc is None
                    else named_variant_error(enc, ref_dir, staged[p]))}
            elif p != precision:
                report["variants"]["fp32"] = {"dir": dst}
        main = staged[precision]
        report["bytes"] = {f: os.path.getsize(os.path.join(main, f))
                           for f in sorted(os.listdir(main)) if f.endswith(".onnx")}
        if not report.get("ok", True):
            report["installed"] = False  # a bundle that fails parity never replaces a good one
            return report
        report["installed"] = True
        write_json(os.path.join(main, "export_report.json"), report)
        for p in sorted(targets, key=lambda p: p == precision):  # the main bundle last
            _install(staged[p], targets[p])
    except OSError as exc:
        raise OutputError(f"--out: export to {out_dir} failed, previous bundle kept: "
                          f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


# What a bundle directory may hold besides its graphs: the export report, TensorRT engines.
BUNDLE_EXTRAS = ("export_report.json", "trt_cache")


def check_replaceable(dst, files=None) -> None:
    """The new bundle replaces `dst` as a whole: refuse when `dst` holds anything that is not
    part of a bundle (someone's other files would go with it). files: a bundle's file names
    (default: an oat_edge bundle's)."""
    if not os.path.isdir(dst):
        return
    known = {*(files or (*mf.FILES.values(), mf.ENTRY_FILE)), *BUNDLE_EXTRAS}
    foreign = sorted(set(os.listdir(dst)) - known)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise OutputError(f"--out: {dst} holds files that are not part of a bundle ({shown}); "
                          f"the export replaces the whole directory: choose a new or empty "
                          f"directory, or an existing bundle")


def _install(staged, dst):
    try:
        replace_dir(staged, dst)
    except OSError as exc:
        raise OutputError(f"--out: cannot put the new bundle at {dst} (the previous one is "
                          f"unchanged): {exc.strerror or exc}") from None


check_parity_fn = check_parity  # the keyword argument `check_parity` shadows the function above
