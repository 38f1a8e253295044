"""How to export GroupNorm in a camera bundle's prefill graph: three candidates, measured.

torch writes GroupNorm as Reshape / InstanceNormalization / Reshape, the reshape targets computed
from the input by Shape ops, because the batch is dynamic. The candidates:

- torch's graph as exported (what the exporter writes);
- the same graph after onnxscript's constant folding (fewer nodes in the file);
- GroupNorm rewritten as LayerNormalization over [-1, groups, C/groups*H*W] with constant
  reshape targets (the feature map size is fixed by the crop), then the per-channel affine.

For each: nodes in the file, nodes after ONNX Runtime's own load-time optimizer, the largest
output difference against the first, and the median prefill time at batch 1 on one thread, the
three interleaved. Default encoder, two 64x64 cameras, the recipe's policy (width 128, 4 layers):

    python -m oat_export.groupnorm_study [--reps 500]
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNormGroupNorm(nn.Module):
    """nn.GroupNorm over a known [C, H, W] as LayerNormalization with constant reshapes."""

    def __init__(self, gn: nn.GroupNorm, chw: tuple):
        super().__init__()
        c, h, w = chw
        self.groups, self.chw, self.eps, self.span = gn.num_groups, chw, gn.eps, c // gn.num_groups * h * w
        self.weight = nn.Parameter(gn.weight.detach().reshape(c, 1, 1))
        self.bias = nn.Parameter(gn.bias.detach().reshape(c, 1, 1))

    def forward(self, x):
        y = F.layer_norm(x.reshape(-1, self.groups, self.span), (self.span,), eps=self.eps)
        return y.reshape(-1, *self.chw) * self.weight + self.bias


def with_layer_norm_group_norms(module: nn.Module, args: tuple) -> nn.Module:
    """A copy of `module` with every GroupNorm replaced (input sizes read in one forward pass)."""
    module, sizes, hooks = copy.deepcopy(module).eval(), {}, []
    for name, m in module.named_modules():
        if isinstance(m, nn.GroupNorm):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: sizes.__setitem__(name, tuple(inp[0].shape[1:]))))
    with torch.no_grad():
        module(*args)
    for h in hooks:
        h.remove()
    for name, chw in sizes.items():
        parent, _, attr = name.rpartition(".")
        owner = module.get_submodule(parent)
        setattr(owner, attr, LayerNormGroupNorm(getattr(owner, attr), chw))
    return module


def _session(path, optimized_path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="oat_export.groupnorm_study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=500, help="timed prefill runs per candidate (interleaved)")
    args = ap.parse_args(argv)
    import onnx
    from oat_edge.train.observation import (
        CameraInput,
        ObservationEncoder,
        ObservationPrefill,
        ObservationSpec,
        StateInput,
    )
    from oat_edge.train.policy import ARPolicy, PolicyConfig
    from onnxscript import optimizer

    from .export import _export
    from .named_prefill import NAMED_OUTPUTS, example_inputs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = ObservationSpec(2, StateInput(7), (CameraInput("corner", 64, 64), CameraInput("topview", 64, 64)))
    enc = ObservationEncoder(spec)
    prefill = ObservationPrefill(enc, ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, width=128, n_layers=4,
                                                            n_heads=4))).eval()
    ex = example_inputs(spec, batch=2)
    dyn = {n: {0: "B"} for n in spec.names} | {"mem_k": {1: "B"}, "mem_v": {1: "B"}}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: os.path.join(tmp, f"{k}.onnx") for k in ("torch", "folded", "layernorm")}
        _export(prefill, ex, paths["torch"], spec.names, NAMED_OUTPUTS, dyn, 17)
        onnx.save(optimizer.optimize(onnx.load(paths["torch"])), paths["folded"])
        _export(with_layer_norm_group_norms(prefill, ex), ex, paths["layernorm"], spec.names, NAMED_OUTPUTS, dyn, 17)
        sess = {k: _session(p, p + ".ort.onnx") for k, p in paths.items()}
        feed = {n: a[:1].numpy() for n, a in zip(spec.names, example_inputs(spec, batch=1, seed=1))}
        ref = sess["torch"].run(None, feed)
        times = {k: [] for k in sess}
        for _ in range(args.reps):
            for k, s in sess.items():
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t)
        for k, p in paths.items():
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(sess[k].run(None, feed), ref))
            rows[k] = (len(onnx.load(p).graph.node), len(onnx.load(p + ".ort.onnx").graph.node), diff,
                       1e3 * float(np.median(times[k])))
    names = {"torch": "torch's GroupNorm, as exported", "folded": "the same, onnxscript constant folding",
             "layernorm": "LayerNormalization, constant reshapes"}
    print("| prefill graph | nodes in the file | after ONNX Runtime's optimizer | max abs diff | median ms |")
    print("|---|---|---|---|---|")
    for k, (n_file, n_ort, diff, ms) in rows.items():
        print(f"| {names[k]} | {n_file} | {n_ort} | {diff:.1e} | {ms:.3f} |")
    print(f"batch 1, one ONNX Runtime thread, median of {args.reps} interleaved; load average "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
