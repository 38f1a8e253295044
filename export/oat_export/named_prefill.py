"""The prefill graph of a named-input (camera) bundle and its manifest block.

The graph is `ObservationPrefill(encoder, policy)`: one input per spec entry, named exactly as the
entry (`observation.state` float32 [B, S, D], `observation.images.<camera>` uint8 [B, S, H, W, 3]),
batch dynamic, outputs mem_k / mem_v as a state bundle's. Every preprocessing step (crop, cast,
/255, mean/std, the state's scale/offset) is inside the graph, so the runtime binds the caller's
buffers untouched and applies no host normalization: the manifest carries the spec as
`observation` and no `normalization.obs_*`.

GroupNorm is exported as torch writes it (Reshape / InstanceNormalization / Reshape with Shape
ops): ONNX Runtime folds those chains when it loads the graph, and the slimmer alternatives measured
no faster (docs/CAMERAS.md, "Export").
"""
from __future__ import annotations

import copy
import os

import torch

NAMED_OUTPUTS = ["mem_k", "mem_v"]


def example_inputs(spec, batch: int = 2, seed: int = 0) -> tuple:
    """Random inputs of the spec, in its order (state float32, frames uint8)."""
    g = torch.Generator().manual_seed(seed)
    S = spec.n_obs_steps
    out = []
    for inp in spec.inputs:
        if inp.dtype == "uint8":
            out.append(torch.randint(0, 256, (batch, S, *inp.shape), generator=g, dtype=torch.uint8))
        else:
            out.append(torch.randn(batch, S, *inp.shape, generator=g))
    return tuple(out)


def export_named_prefill(encoder, policy, path: str, opset: int) -> None:
    """Write ObservationPrefill(encoder, policy) to `path` with the spec's input names."""
    from oat_edge.train.observation import ObservationPrefill

    from .export import _export  # late import: export imports this module

    spec = encoder.spec
    args = example_inputs(spec)
    module = ObservationPrefill(encoder, policy).eval()
    dynamic = {n: {0: "B"} for n in spec.names}
    dynamic.update({"mem_k": {1: "B"}, "mem_v": {1: "B"}})
    _export(module, args, os.fspath(path), spec.names, NAMED_OUTPUTS, dynamic, opset)


def named_manifest(d: dict, spec) -> dict:
    """A state bundle's manifest `d` -> the named-input bundle's: the spec as `observation`, the
    prefill inputs named by it, no host observation normalization."""
    d = copy.deepcopy(d)
    for key in ("obs_scale", "obs_offset"):
        d["normalization"].pop(key, None)
    d["observation"] = spec.to_dict()
    d["io"]["prefill"]["inputs"] = list(spec.names)
    return d
