"""The bundle's graphs opened with ONNX Runtime and checked against the manifest (DESIGN.md §5-6):
the same engine and the same checks as the C++ loader (cpp/src/bundle.cpp), so `oat-edge inspect`
and `Policy()` accept and reject the same bundles. The expected names, element types and shapes
come from the `graphs` table of bundle_schema.json, resolved with the manifest's dimensions.
"""
import os

from .errors import BundleError
from .manifest import MANIFEST_KEY, SCHEMA, dims, graph_files, graph_inputs, io_names, parse, validate

_ELEM = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(float16)": "float16",
         "tensor(double)": "float64", "tensor(int32)": "int32", "tensor(uint8)": "uint8"}


def _fmt(shape):
    return "[" + ",".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape) + "]"


def open_graph(bundle_dir, name):
    """An ORT session on one graph file."""
    import onnxruntime as ort

    so = ort.SessionOptions()  # the C++ loader's options: a graph its optimizer rejects fails here too
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(os.path.join(bundle_dir, name), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for every load failure
        raise BundleError(f"ONNX Runtime could not load graph '{name}' from {bundle_dir}: {e}. The file is not a "
                          "valid ONNX graph for this runtime (damaged, not ONNX, or made for a newer ONNX Runtime); "
                          "re-export the bundle or upgrade onnxruntime.") from None


def check_graph(graph_name, session, d):
    """One graph (an ORT session) against the schema's table for it and the manifest `d`.
    Returns {tensor name: shape} as the graph declares it (-1 for dynamic dims)."""
    spec, n = {"inputs": graph_inputs(d, graph_name), "outputs": SCHEMA["graphs"][graph_name]["outputs"]}, dims(d)
    got = {"inputs": {a.name: a for a in session.get_inputs()}, "outputs": {a.name: a for a in session.get_outputs()}}
    want_names = {side: io_names(d, graph_name, side) for side in ("inputs", "outputs")}
    if any(sorted(got[s]) != sorted(want_names[s]) for s in ("inputs", "outputs")):
        raise BundleError(f"{graph_name} graph I/O is [{', '.join(got['inputs'])}] -> [{', '.join(got['outputs'])}], "
                          f"the bundle contract says [{', '.join(want_names['inputs'])}] -> "
                          f"[{', '.join(want_names['outputs'])}]: the bundle is inconsistent, re-export it")
    shapes = {}
    for side in ("inputs", "outputs"):
        for name, elem, dim_names in spec[side]:
            what = f"{graph_name} {side[:-1]} '{name}'"
            arg = got[side][name]
            if not arg.type.startswith("tensor("):
                raise BundleError(f"{what} is not a tensor; re-export the bundle")
            g_elem = _ELEM.get(arg.type, arg.type)
            if g_elem != elem:
                raise BundleError(f"{what} has element type {g_elem}, expected {elem} (graph I/O keeps the "
                                  "contract's types even for fp16/int8 weights); re-export the bundle")
            g_shape = [x if isinstance(x, int) and x > 0 else -1 for x in (arg.shape or [])]
            want = [x if isinstance(x, int) else (0 if x == "B" else n[x]) for x in dim_names]
            if len(g_shape) != len(want) or any(w > 0 and g > 0 and w != g for w, g in zip(want, g_shape)):
                raise BundleError(f"{what} has shape {_fmt(g_shape)}, the manifest implies {_fmt(want)}: "
                                  "the bundle is inconsistent, re-export it")
            shapes[name] = g_shape
    return shapes


def load_checked(bundle_dir, entry):
    """Manifest of the bundle whose entry file is bundle_dir/entry, after every check the C++ loader
    makes, in its order (manifest.entry_path checked the entry file): manifest valid, files present,
    entry is the step graph, each graph loads in ONNX Runtime, matches the contract, and runs."""
    step = open_graph(bundle_dir, entry)
    try:
        props = step.get_modelmeta().custom_metadata_map
    except UnicodeDecodeError as e:  # the C++ parser reads the same bytes and rejects them as JSON
        raise BundleError(f"invalid bundle manifest: not valid JSON (ill-formed UTF-8: {e}). "
                          "Re-export the bundle with oat_edge's exporter.") from None
    if MANIFEST_KEY not in props:
        raise BundleError(f"{entry} has no '{MANIFEST_KEY}' metadata: it is not an oat_edge bundle entry file. "
                          "Export one with oat_edge's exporter.")
    d = validate(parse(props[MANIFEST_KEY]), bundle_dir)
    if d["files"]["step"] != entry:
        raise BundleError(f"manifest files.step is '{d['files']['step']}' but the entry file is '{entry}': "
                          "the entry file must be the step graph; re-export the bundle")
    sessions = {"step": step}
    for role, name in graph_files(d).items():
        if role != "step":
            sessions[role] = open_graph(bundle_dir, name)
    shapes = {role: check_graph(role, s, d) for role, s in sessions.items()}
    for role, s in sessions.items():
        check_graph_metadata(role, d["files"][role], s, d)
    batch = shapes["step"]["past_k"][1]  # > 0 when exported with a fixed batch, which it then requires
    dry_run(sessions, d, max(batch, 1))
    return d


def check_graph_metadata(graph_name, file_name, session, d):
    """The schema's `graph_metadata` (the FSQ levels the graph was exported with) against the manifest:
    a graph from another tokenizer than the manifest describes is refused, as the C++ loader does."""
    import json

    rule = SCHEMA["graph_metadata"]
    if graph_name not in rule["graphs"]:
        return
    key, want = rule["key"], d
    for part in rule["equals"].split("."):
        want = want[part]
    what = f"{graph_name} graph '{file_name}'"
    try:
        props = session.get_modelmeta().custom_metadata_map
    except UnicodeDecodeError:
        props = {key: None}
    if key not in props:
        if rule["required"]:
            raise BundleError(f"{what} has no '{key}' metadata: re-export with this oat_edge, or stamp it with "
                              "`python -m oat_export.stamp BUNDLE`")
        return
    try:
        got = json.loads(props[key])
    except (TypeError, ValueError):
        got = None
    if not (isinstance(got, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in got)):
        raise BundleError(f"{what} metadata '{key}' is '{str(props[key])[:80]}', expected a JSON list of integers; "
                          "re-export the bundle")
    if got != want:
        raise BundleError(f"{what} was exported with FSQ levels {got} ('{key}'), the manifest's {rule['equals']} is "
                          f"{want}: the graphs and the manifest come from different tokenizers; re-export the bundle")


def _run(session, graph, feeds):
    try:
        return session.run(None, feeds)
    except Exception as e:  # ORT's own exception types
        raise BundleError(f"ONNX Runtime failed while running the {graph} graph: {e}. The graphs may not match "
                          "the manifest; re-export the bundle.") from None


def zero_observation(d, batch):
    """The prefill feeds of the observation that normalizes to 0 (state bundles: zeros, the host
    normalizes; named inputs: the state at -offset / scale, black camera frames), as Policy() warms up."""
    import numpy as np

    S = d["policy"]["n_obs_steps"]
    if "observation" not in d:
        return {"obs": np.zeros((batch, S, d["policy"]["obs_dim"]), np.float32)}
    feeds = {}
    for i in d["observation"]["inputs"]:
        if i["dtype"] == "float32":
            n = i["normalize"]
            row = -np.float32(n["offset"]) / np.float32(n["scale"])
            feeds[i["name"]] = np.broadcast_to(row, (batch, S, *i["shape"])).astype(np.float32)
        else:
            feeds[i["name"]] = np.zeros((batch, S, *i["shape"]), np.uint8)
    return feeds


def dry_run(sessions, d, batch=1):
    """One greedy act on the observation that normalizes to 0, as Policy() warms itself up: a bundle
    whose graphs load but cannot run, or produce a non-finite logit or action, is rejected here too."""
    import numpy as np

    n = dims(d)
    B, L, H, K, Dh = batch, n["L"], n["H"], n["K"], n["Dh"]
    step, out_names = sessions["step"], [o.name for o in sessions["step"].get_outputs()]
    mem_k, mem_v = _run(sessions["prefill"], "prefill", zero_observation(d, B))
    past_k, past_v = (np.zeros((L, B, H, K, Dh), np.float32) for _ in range(2))
    cb = d["tokenizer"]["codebook_size"]
    ids, token = np.zeros((B, K), np.int64), np.full(B, d["policy"]["bos_id"], np.int64)
    for t in range(K):
        outs = dict(zip(out_names, _run(step, "step", {
            "token": token, "step": np.array([t], np.int64),
            "past_k": past_k, "past_v": past_v, "mem_k": mem_k, "mem_v": mem_v})))
        logits = outs["logits"][:, :cb]
        finite = np.isfinite(logits)
        if not finite.all():
            bad = np.flatnonzero(~finite.all(axis=0))
            raise BundleError(f"the step graph produced a non-finite logit (id {bad[0]}); the bundle's weights or "
                              "inputs are broken: re-export it and check the parity report")
        past_k[:, :, :, t:t + 1], past_v[:, :, :, t:t + 1] = outs["new_k"], outs["new_v"]
        token = ids[:, t] = np.argmax(logits, axis=1)
    levels = np.asarray(d["tokenizer"]["fsq_levels"], np.int64)
    basis = np.concatenate([[1], np.cumprod(levels[:-1])])
    half = levels // 2
    codes = (((ids[..., None] // basis) % levels - half) / half).astype(np.float32)
    (actions,) = _run(sessions["decoder"], "decoder", {"codes": codes, "num_tokens": np.full(B, K, np.int64)})
    bad = np.flatnonzero(~np.isfinite(actions.ravel()))
    if bad.size:
        raise BundleError(f"the decoder graph produced a non-finite action (flat index {bad[0]}); the bundle is "
                          "broken: re-export it and check the parity report")
