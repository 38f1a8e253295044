"""Lower bounds on a bundle's act() latency on this machine, from measured rates and graph costs.

Two rates, measured on the benchmark's thread count, each the faster of torch and ONNX Runtime
(MLAS) and the best of several timed calls, measured before and after a benchmark's rounds with the
higher kept (on a shared machine a slower run measures the other jobs, not the machine):

- GEMV bandwidth: y = A x on a float32 matrix, bytes of A / time, warm. Measured on a matrix as
  large as each graph's weights (the rate at which that graph's weights can be re-read: the step
  graph runs k times in a row, a control loop calls act() over and over, so weights that fit in
  cache are read from cache) and, for reference, on a matrix twice the last-level cache (`dram`).
- SGEMM throughput: C = A B on 512 x 512 float32 matrices, 2 n^3 / time.

Per graph, counted from the ONNX graph itself at batch 1 (`graph_cost`): weight bytes read per
run (every initializer a MatMul/Gemm/Conv/... consumes, whole; an initializer only Gathered from,
such as a token embedding, one row per batch row) and FLOPs (2 x multiply-adds of MatMul, Gemm,
Conv and their integer forms, shapes from one ONNX Runtime run at batch 1; element-wise ops, norms
and softmax not counted).

One act() runs prefill once, the step graph k times and the decoder once. Its bound is the sum,
over those runs, of each graph's roofline time max(bytes / bandwidth, FLOPs / SGEMM): no
implementation on this core can read those weights faster than a GEMV does or multiply faster than
a large SGEMM does. Ratios latency / bound say how far each backend is from the machine.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul"}
CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}
ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def llc_bytes(default: int = 32 << 20) -> int:
    """Size of the largest CPU cache (sysfs), or `default` where it cannot be read."""
    best = 0
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in os.listdir(root):
            with open(os.path.join(root, idx, "size")) as f:
                s = f.read().strip()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
            best = max(best, int(s.rstrip("KMG")) * mult)
    except (OSError, ValueError):
        pass
    return best or default


def _best_s(fn, repeats: int) -> float:
    """Fastest of `repeats` timed calls: a rate for a lower bound is the best the machine did
    (on a shared machine, slower runs measure the other jobs)."""
    fn()  # warm: page in, caches
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(min(ts))


def gemv_bandwidth(nbytes: int, repeats: int = 15) -> float:
    """GB/s of y = A x, A float32 of about `nbytes` (1024 columns): the faster of torch.mv and
    ONNX Runtime's MatMul, each on torch's current thread count."""
    import torch

    cols = 1024
    rows = max(1, int(nbytes) // (4 * cols))
    a = torch.randn(rows, cols)
    x = torch.randn(cols)
    # enough calls per timing that one lasts ~0.1 ms even when A fits in L1
    inner = max(1, (8 << 20) // (4 * rows * cols))

    def run():
        for _ in range(inner):
            torch.mv(a, x)

    sess, feed = _ort_matmul(np.ascontiguousarray(a.numpy().T), 1, torch.get_num_threads())

    def run_ort():
        for _ in range(inner):
            sess.run(None, feed)

    return 4 * rows * cols * inner / min(_best_s(run, repeats), _best_s(run_ort, repeats)) / 1e9


def _ort_matmul(b: np.ndarray, m: int, threads: int):
    """(ONNX Runtime session computing a @ b with b a constant, feed of an [m, k] a)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    k, n = b.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
                              [onnx.numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, {"a": np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)}


def sgemm_throughput(n: int = 512, repeats: int = 25) -> float:
    """GFLOP/s of an n x n x n float32 matmul: the faster of torch.mm and ONNX Runtime's MatMul,
    each on torch's current thread count. 512 keeps each timed call to milliseconds, so that some
    of them run without being preempted on a shared machine."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    sess, feed = _ort_matmul(b.numpy(), n, torch.get_num_threads())
    best = min(_best_s(lambda: torch.mm(a, b), repeats), _best_s(lambda: sess.run(None, feed), repeats))
    return 2 * n**3 / best / 1e9


@dataclass
class Rates:
    threads: int
    llc_bytes: int
    dram_bytes: int           # the matrix of the `dram` GEMV: 2x the last-level cache, >= 64 MiB
    gemv_dram_gbs: float
    gemv_gbs: dict            # graph -> GB/s of a GEMV over that graph's weight bytes (warm)
    weight_bytes: dict        # graph -> its weight bytes (the matrix size of gemv_gbs)
    sgemm_gflops: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_rates(costs: dict, threads: int = 1) -> Rates:
    """Measure the rates for a bundle's graph costs on `threads` torch threads (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        llc = llc_bytes()
        dram = max(2 * llc, 64 << 20)
        sizes = {g: c["weight_bytes"] for g, c in costs.items()}
        return Rates(threads, llc, dram, gemv_bandwidth(dram, repeats=9),
                     {g: gemv_bandwidth(max(b, 4096)) for g, b in sizes.items()}, sizes, sgemm_throughput())
    finally:
        torch.set_num_threads(before)


def faster(a: Rates, b: Rates) -> Rates:
    """Each rate the higher of two measurements (taken before and after a benchmark's rounds)."""
    return Rates(a.threads, a.llc_bytes, a.dram_bytes, max(a.gemv_dram_gbs, b.gemv_dram_gbs),
                 {g: max(v, b.gemv_gbs[g]) for g, v in a.gemv_gbs.items()}, a.weight_bytes,
                 max(a.sgemm_gflops, b.sgemm_gflops))


_NP_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16}


def _shapes_at_batch_one(model, names) -> dict:
    """{tensor name: shape} of `names` in one ONNX Runtime run of `model` at batch 1 (zeros in,
    integer inputs 1 so that a token count or step index is valid), optimizations off so that
    every node runs as written."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    feed = {}
    for inp in m.graph.input:
        if inp.name in {t.name for t in m.graph.initializer}:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dt = _NP_DTYPES.get(tt.elem_type, np.float32)
        feed[inp.name] = (np.ones if np.issubdtype(dt, np.integer) else np.zeros)(shape, dt)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in m.graph.output]
    return {n: list(np.shape(v)) for n, v in zip(outs, sess.run(outs, feed))}


def graph_cost(path: str) -> dict:
    """Weight bytes read and FLOPs of one run of the ONNX graph at `path`, batch 1 (shapes from
    one ONNX Runtime run of the graph at batch 1)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
        if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims:
            inits[n.output[0]] = n.attribute[0].t
    weight_bytes = 0
    for name, t in inits.items():
        ops = consumers.get(name, [])
        if not ops:
            continue
        size = (int(np.prod(t.dims)) * ELEM_BYTES[t.data_type] if t.data_type in ELEM_BYTES
                else numpy_helper.to_array(t).nbytes)
        if all(op == "Gather" for op in ops) and t.dims:
            size //= max(1, t.dims[0])  # one row per (batch-1) lookup
        weight_bytes += size
    counted = [n for n in g.node if n.op_type in MATMUL_OPS | CONV_OPS]
    want = {x for n in counted for x in (*n.input[:4], n.output[0]) if x and x not in inits}
    shapes = _shapes_at_batch_one(model, sorted(want)) if want else {}
    shapes.update({name: list(t.dims) for name, t in inits.items()})
    flops = 0
    for n in counted:
        out = shapes[n.output[0]]
        if n.op_type in MATMUL_OPS:
            a = shapes[n.input[0] if n.op_type != "QLinearMatMul" else n.input[0]]
            trans_a = any(at.name == "transA" and at.i for at in n.attribute)
            flops += 2 * int(np.prod(out)) * (a[-2] if trans_a else a[-1])
        else:  # weight [Cout, Cin/groups, kh, kw]
            w = shapes[n.input[1] if n.op_type != "QLinearConv" else n.input[3]]
            flops += 2 * int(np.prod(out)) * int(np.prod(w[1:]))
    return {"weight_bytes": int(weight_bytes), "flops": int(flops), "nodes": len(g.node)}


def bundle_costs(bundle: str) -> dict:
    """{graph: graph_cost} for the prefill, step and decoder graphs of a bundle."""
    from oat_edge import manifest as mf

    d = mf.load_manifest(bundle)
    root = bundle if os.path.isdir(bundle) else os.path.dirname(os.path.abspath(bundle))
    return {g: graph_cost(os.path.join(root, d["files"][g])) for g in ("prefill", "step", "decoder")}


def graph_bound_ms(cost: dict, rates: Rates, graph: str) -> dict:
    memory = cost["weight_bytes"] / (rates.gemv_gbs[graph] * 1e9) * 1e3
    compute = cost["flops"] / (rates.sgemm_gflops * 1e9) * 1e3
    return {"memory_ms": memory, "compute_ms": compute, "ms": max(memory, compute)}


def act_bound_ms(costs: dict, rates: Rates, k: int) -> dict:
    """The bound of one act() with k tokens, with its parts: prefill, k steps, decoder."""
    parts = {g: graph_bound_ms(costs[g], rates, g) for g in ("prefill", "step", "decoder")}
    runs = {"prefill": 1, "step": k, "decoder": 1}
    out = {f"{g}_ms": runs[g] * parts[g]["ms"] for g in parts}
    out["ms"] = sum(out.values())
    out["memory_ms"] = sum(runs[g] * parts[g]["memory_ms"] for g in parts)
    out["compute_ms"] = sum(runs[g] * parts[g]["compute_ms"] for g in parts)
    return out


def describe(costs: dict, rates: Rates) -> str:
    """Plain lines: the measured rates and each graph's cost (for the bench's table header)."""
    lines = [f"rates, {rates.threads} thread: SGEMM {rates.sgemm_gflops:.1f} GFLOP/s (512^3); GEMV "
             f"{rates.gemv_dram_gbs:.1f} GB/s on a {rates.dram_bytes >> 20} MiB matrix (last-level cache "
             f"{rates.llc_bytes >> 20} MiB) and, per graph, on a matrix of its weights' size:"]
    for g, c in costs.items():
        b = graph_bound_ms(c, rates, g)
        lines.append(f"{g}: {c['weight_bytes'] / 2**20:.2f} MiB weights (GEMV {rates.gemv_gbs[g]:.1f} GB/s), "
                     f"{c['flops'] / 1e6:.2f} MFLOP (ONNX graph, batch 1), {c['nodes']} nodes; bound {b['ms']:.3f} ms "
                     f"({'memory' if b['memory_ms'] >= b['compute_ms'] else 'compute'})")
    return "\n".join(lines)
