"""Two bundles of the same model side by side: graph sizes, identical outputs, act() latency.

    .venv/bin/python scripts/compare_bundles.py OLD_BUNDLE NEW_BUNDLE [--rounds 600] [--obs 2000]

For a re-export of the same weights (e.g. after a change to the exporter):
  1. node count of each graph after ORT's optimizer (what ORT actually runs per call);
  2. sampled token ids and actions on random observations, which must be identical;
  3. batch-1 act() latency through the C++ runtime, the two bundles interleaved call by call
     (order alternating) so that a noisy machine hits both alike; only the ratio is meaningful;
  4. page faults and latency of the first act() of a freshly loaded Policy, with and without the
     constructor's warm-up (fresh processes, NEW_BUNDLE; the interpreter's own first-call costs are
     paid on another Policy first, as in tests/runtime/test_realtime.py).

The README's "Small graphs" figures come from this script, run against the bundle exported before
the graphs were slimmed:
    git archive 509c6ee models/oat-metaworld-mt3 | tar -x -C /tmp/old
    .venv/bin/python scripts/compare_bundles.py /tmp/old/models/oat-metaworld-mt3 models/oat-metaworld-mt3
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import oat_edge
from oat_edge.manifest import load_manifest

GRAPHS = ("step", "prefill", "decoder")

_FIRST_ACT = r"""
import json, sys, time, numpy as np, oat_edge
q = oat_edge.Policy(sys.argv[1])  # pays Python's and pybind's own first-call costs
obs = np.zeros((q.info["n_obs_steps"], q.info["obs_dim"]), np.float32)
for kw in ({"temperature": 0}, {"seed": 0}):
    q.act(obs, **kw)
p = oat_edge.Policy(sys.argv[1], warmup=sys.argv[2] == "1")
f0 = oat_edge.thread_faults(); t = time.perf_counter()
p.act(obs, seed=0)
ms = (time.perf_counter() - t) * 1e3; f1 = oat_edge.thread_faults()
print(json.dumps({"faults": f1["minor"] - f0["minor"], "ms": ms}))
"""


def optimized_node_counts(bundle_dir, files):
    import onnx
    import onnxruntime as ort

    out = {}
    for graph in GRAPHS:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        with tempfile.TemporaryDirectory() as tmp:
            so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
            ort.InferenceSession(os.path.join(bundle_dir, files[graph]), so, providers=["CPUExecutionProvider"])
            ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
        out[graph] = sum(ops.values())
    return out


def random_obs(policy, rng):
    norm = policy.info.normalization
    scale, offset = norm.obs_scale.astype(np.float64), norm.obs_offset.astype(np.float64)
    u = rng.uniform(-1, 1, (policy.info["n_obs_steps"], policy.info["obs_dim"]))
    return ((u - offset) / scale).astype(np.float32)  # normalizes to u (x * scale + offset)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=600, help="interleaved act() pairs per k")
    ap.add_argument("--obs", type=int, default=2000, help="random observations for the output check")
    a = ap.parse_args()
    old, new = oat_edge.Policy(a.old), oat_edge.Policy(a.new)

    print("nodes after ORT optimization (old -> new):")
    n_old = optimized_node_counts(a.old, load_manifest(a.old)["files"])
    n_new = optimized_node_counts(a.new, load_manifest(a.new)["files"])
    for g in GRAPHS:
        print(f"  {g:8s} {n_old[g]:4d} -> {n_new[g]:4d}")

    rng = np.random.default_rng(0)
    same, worst = 0, 0.0
    for i in range(a.obs):
        obs = random_obs(old, rng)
        same += np.array_equal(old.generate(obs, seed=i), new.generate(obs, seed=i))
        worst = max(worst, float(np.abs(old.act(obs, seed=i) - new.act(obs, seed=i)).max()))
    print(f"sampled token ids identical on {same}/{a.obs} random observations; max |action diff| {worst:.2e}")

    obs = random_obs(old, rng)
    print("batch-1 act() latency, greedy, interleaved (median / p99 ms):")
    for k in (1, 2, 4, 8):
        t = {"old": [], "new": []}
        for r in range(a.rounds):
            pair = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
            for name, p in pair:
                t0 = time.perf_counter()
                p.act(obs, max_tokens=k, temperature=0)
                t[name].append((time.perf_counter() - t0) * 1e3)
        o, n = (np.asarray(t[x][a.rounds // 10:]) for x in ("old", "new"))
        print(f"  k={k}: old {np.median(o):.3f} / {np.percentile(o, 99):.3f}   new {np.median(n):.3f} / "
              f"{np.percentile(n, 99):.3f}   old/new {np.median(o) / np.median(n):.2f}x")

    print(f"first act() after load ({a.new}, fresh processes):")
    for warmup in (False, True):
        r = subprocess.run([sys.executable, "-c", _FIRST_ACT, a.new, "1" if warmup else "0"],
                           capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  warmup={warmup!s:5s}: {d['faults']} page faults, {d['ms']:.2f} ms")


if __name__ == "__main__":
    main()
