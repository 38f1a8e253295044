"""Failed bundle loads leak nothing: 200 loads of bundles that fail at different points (a
truncated graph, a missing graph, a manifest wrong for its graphs, a corrupt decoder), in a child
interpreter, do not grow its resident memory.
"""
import os
import shutil
import subprocess
import sys

_LEAK_CHILD = r"""
import os, sys
from oat_edge import Policy
from oat_edge.errors import BundleError
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
paths = sys.argv[2:]
n = int(sys.argv[1])
def cycle(count):
    for i in range(count):
        try:
            Policy(paths[i % len(paths)])
        except BundleError:
            pass
        else:
            sys.exit(f"{paths[i % len(paths)]} loaded")
cycle(40)  # warm-up: ORT env, allocator arenas, first-use caches
r0 = rss()
cycle(n)
print(n, r0, rss() - r0)
"""

# RSS growth allowed over 200 failed loads. Measured on the dev box (2 cores): 92-190 KiB idle,
# up to 1.5 MiB under load; ORT's own InferenceSession on the same broken files churns the same way.
# Leaking one failed load's sessions/buffers (>= 20 KiB each) would exceed this.
LEAK_BOUND = 4 * 1024 * 1024


def test_200_failed_loads_do_not_grow_rss(edit_manifest, tiny_bundle, tmp_path, child_env):
    trunc = shutil.copytree(tiny_bundle, tmp_path / "trunc")
    data = (trunc / "model.onnx").read_bytes()
    (trunc / "model.onnx").write_bytes(data[: len(data) // 2])
    nodec = shutil.copytree(tiny_bundle, tmp_path / "nodec")
    os.remove(nodec / "decoder.onnx")
    badman = shutil.copytree(tiny_bundle, tmp_path / "badman")
    edit_manifest(badman, lambda d: d["policy"].update(n_layers=3))  # fails after all sessions exist
    baddec = shutil.copytree(tiny_bundle, tmp_path / "baddec")
    (baddec / "decoder.onnx").write_bytes(b"\0" * 100)  # fails on the third session
    paths = [str(p) for p in (trunc, nodec, badman, baddec)]
    r = subprocess.run([sys.executable, "-c", _LEAK_CHILD, "200", *paths], capture_output=True, text=True,
                       env=child_env, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    n, r0, growth = map(int, r.stdout.split())
    print(f"RSS after warm-up {r0 / 2**20:.1f} MiB, growth over {n} failed loads: {growth / 1024:.0f} KiB")
    assert growth < LEAK_BOUND, f"RSS grew {growth / 1024:.0f} KiB over {n} failed loads"
