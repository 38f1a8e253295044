"""Heap allocations ONNX Runtime's CPU executor makes per graph node per Run(), whatever its options.

    LD_PRELOAD=build/<python tag>/cpp/tools/liboat_edge_malloc_counter.so \
        .venv/bin/python scripts/ort_allocs_per_node.py

Chains of 10 and 110 identical nodes (Add, Relu, MatMul, Reshape) on a [1, 64] tensor, run with
IoBinding (input and output bound once), for the default session and with the memory arena or the
memory pattern turned off. The slope between the two chain lengths is the cost of one node; it is
why the exporter keeps graphs small (docs/DESIGN.md section 5) and why oat_edge cannot reach zero
allocations per token inside ORT's CPU executor.
"""
import ctypes

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

OPS = ("Add", "Relu", "MatMul", "Reshape")
SETTINGS = {"default": {}, "no memory pattern": {"enable_mem_pattern": False},
            "no arena": {"enable_cpu_mem_arena": False}}


def counter():
    try:
        fn = ctypes.CDLL(None).oat_malloc_count
    except AttributeError as err:
        hint = "run under LD_PRELOAD=<build>/cpp/tools/liboat_edge_malloc_counter.so (make setup builds it)"
        raise SystemExit(hint) from err
    fn.restype = ctypes.c_uint64
    return fn


def chain(n, op):
    """x [1, 64] -> n nodes of `op` -> y; a Reshape chain alternates [1, 8, 8] and [1, 64]."""
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"t{i}"
        inputs = {"Add": [prev, "w"], "Relu": [prev], "MatMul": [prev, "W"],
                  "Reshape": [prev, "s3" if i % 2 == 0 else "s2"]}[op]
        nodes.append(helper.make_node(op, inputs, [out]))
        prev = out
    y_shape = [1, 8, 8] if op == "Reshape" and n % 2 == 1 else [1, 64]
    inits = {"Add": [helper.make_tensor("w", TensorProto.FLOAT, [64], np.ones(64, np.float32))],
             "MatMul": [helper.make_tensor("W", TensorProto.FLOAT, [64, 64], np.eye(64, dtype=np.float32).ravel())],
             "Reshape": [helper.make_tensor("s3", TensorProto.INT64, [3], [1, 8, 8]),
                         helper.make_tensor("s2", TensorProto.INT64, [2], [1, 64])]}.get(op, [])
    g = helper.make_graph(nodes, op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), y_shape


def allocs_per_run(count, n, op, options, runs=100):
    model, y_shape = chain(n, op)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the chain as built
    for k, v in options.items():
        setattr(so, k, v)
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    b = s.io_binding()
    b.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 64), np.float32)))
    b.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(np.zeros(y_shape, np.float32)))
    for _ in range(20):  # warm-up
        s.run_with_iobinding(b)
    c0 = count()
    for _ in range(runs):
        s.run_with_iobinding(b)
    return (count() - c0) / runs


def main():
    count = counter()
    print(f"ONNX Runtime {ort.__version__}: heap allocations per node per Run() (chain of 110 minus chain of 10)")
    print(f"{'op':8s}" + "".join(f"{name:>20s}" for name in SETTINGS))
    for op in OPS:
        row = [(allocs_per_run(count, 110, op, o) - allocs_per_run(count, 10, op, o)) / 100 for o in SETTINGS.values()]
        print(f"{op:8s}" + "".join(f"{v:20.2f}" for v in row))


if __name__ == "__main__":
    main()
