"""The bundle's graphs checked against its manifest (DESIGN.md §5-6), with `onnx`: the same checks
the C++ loader makes with ONNX Runtime (cpp/src/bundle.cpp), so `oat-edge inspect` and `Policy()`
accept and reject the same bundles. The expected names, element types and shapes come from the
`graphs` table of bundle_schema.json, resolved with the manifest's dimensions.
"""
import os

from .errors import BundleError
from .manifest import SCHEMA, dims, graph_files

_ELEM = {1: "float32", 7: "int64"}  # onnx.TensorProto data types the contract uses


def _fmt(shape):
    return "[" + ",".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape) + "]"


def _tensor_types(graph):
    """name -> (element type name, shape with -1 for dynamic dims) of a graph's real inputs/outputs."""
    inits = {i.name for i in graph.initializer}
    out = {}
    for side, vis in (("inputs", graph.input), ("outputs", graph.output)):
        out[side] = {}
        for vi in vis:
            if vi.name in inits:
                continue
            t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
            if t is None:
                out[side][vi.name] = (None, [])
                continue
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out[side][vi.name] = (_ELEM.get(t.elem_type, f"ONNX type {t.elem_type}"), shape)
    return out


def check_graph(graph_name, graph, d):
    """One graph (an onnx GraphProto) against the schema's table for it and the manifest `d`."""
    spec, n = SCHEMA["graphs"][graph_name], dims(d)
    got = _tensor_types(graph)
    want_names = {side: [t[0] for t in spec[side]] for side in ("inputs", "outputs")}
    if any(sorted(got[s]) != sorted(want_names[s]) for s in ("inputs", "outputs")):
        raise BundleError(f"{graph_name} graph I/O is [{', '.join(got['inputs'])}] -> [{', '.join(got['outputs'])}], "
                          f"the bundle contract says [{', '.join(want_names['inputs'])}] -> "
                          f"[{', '.join(want_names['outputs'])}]: the bundle is inconsistent, re-export it")
    for side in ("inputs", "outputs"):
        for name, elem, dim_names in spec[side]:
            what = f"{graph_name} {side[:-1]} '{name}'"
            g_elem, g_shape = got[side][name]
            if g_elem is None:
                raise BundleError(f"{what} is not a tensor; re-export the bundle")
            if g_elem != elem:
                raise BundleError(f"{what} has element type {g_elem}, expected {elem} (graph I/O stays "
                                  "float32/int64 even for fp16/int8 weights); re-export the bundle")
            want = [x if isinstance(x, int) else (0 if x == "B" else n[x]) for x in dim_names]
            if len(g_shape) != len(want) or any(w > 0 and g > 0 and w != g for w, g in zip(want, g_shape)):
                raise BundleError(f"{what} has shape {_fmt(g_shape)}, the manifest implies {_fmt(want)}: "
                                  "the bundle is inconsistent, re-export it")


def check_graphs(d, bundle_dir, loaded=None):
    """Every graph the validated manifest `d` lists, read from bundle_dir (or taken from `loaded`,
    {role: onnx.ModelProto}), checked against the contract. Raises BundleError."""
    import onnx

    loaded = loaded or {}
    for role, name in graph_files(d).items():
        model = loaded.get(role)
        if model is None:
            path = os.path.join(bundle_dir, name)
            try:
                model = onnx.load(path, load_external_data=False)
            except Exception as e:
                raise BundleError(f"bundle: cannot read {path} ({role} graph) as ONNX: {e}") from e
        check_graph(role, model.graph, d)
