"""Fast soak: scripts/soak.py (5,000 act calls after 1,000 warm-up, in a fresh interpreter so the
RSS is this workload's alone) must stay within 1 MiB of RSS growth and leak no malloc'ed memory.
The full run is `make soak` (100,000 calls)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOAK = os.path.join(ROOT, "scripts", "soak.py")


def _soak(bundle, tmp_path, child_env, *args):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, SOAK, bundle, "--json", str(out), *args], capture_output=True, text=True,
                       env=child_env, timeout=300)
    return r, (json.loads(out.read_text()) if out.exists() else None)


def test_5000_act_calls_grow_rss_by_less_than_1_mib(bundle, tmp_path, child_env):
    r, res = _soak(bundle, tmp_path, child_env, "-n", "5000", "--warmup", "1000", "--every", "500")
    print(r.stdout)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr[-3000:]}"
    assert res["calls"] == 5000 and len(res["samples"]) == 11
    assert res["growth_mb"] <= 1.0, res
    if res["malloc_in_use_growth_kb"] is not None:  # glibc: memory really held, not heap-top steps
        assert res["malloc_in_use_growth_kb"] < 64, res


def test_soak_script_fails_when_growth_exceeds_the_limit(bundle, tmp_path, child_env):
    # The gate itself must be able to fail: a negative limit is exceeded by any run.
    r, res = _soak(bundle, tmp_path, child_env, "-n", "20", "--warmup", "0", "--every", "10",
                   "--max-growth-mb", "-1")
    assert r.returncode == 1 and "FAIL" in r.stdout, r.stdout + r.stderr
