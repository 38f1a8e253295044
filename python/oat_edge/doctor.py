"""`oat-edge doctor [BUNDLE]`: is this computer ready to run a bundle in a real-time loop?

One line per check, each `pass`, `warn`, `fail` (or `skip` where it does not apply), with the fix
for anything short of a pass. Exit status 0 when nothing failed (the robot is ready), 1 otherwise;
`--json` prints the same as one JSON object for fleet tooling.

Everything a check reads from the machine goes through `Host` (a root directory for /proc, /sys
and /etc, the resource limits, the commands it runs), so every pass and fail path is tested with
faked files and limits, no privileges needed. Only the latency probe runs the real runtime.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from . import ort_probe
from .ort_library import find_ort_library

STATUSES = ("pass", "warn", "fail", "skip")
CAP_IPC_LOCK, CAP_SYS_NICE = 14, 23  # bit numbers in /proc/<pid>/status CapEff
PROVIDER_OF_DEVICE = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                      "tensorrt": "TensorrtExecutionProvider"}
JTOP_SOCKET = "/run/jtop.sock"  # jetson-stats' service socket


@dataclass
class Check:
    name: str
    status: str  # one of STATUSES
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status}] {self.name}: {self.detail}"
        return f"{text}  -> fix: {self.fix}" if self.fix and self.status in ("warn", "fail") else text


def _run_command(cmd: list[str]) -> str | None:
    """stdout of a command, or None when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Host:
    """The machine as the checks see it; tests replace any part."""
    root: str = "/"
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit
    run: Callable[[list[str]], str | None] = _run_command
    module_available: Callable[[str], bool] = _module_available
    probe_ort: Callable[[str], dict] = ort_probe.probe_in_child

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def read(self, p: str) -> str | None:
        try:
            with open(self.path(p), errors="replace") as f:
                return f.read().replace("\0", "").strip()
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Absolute (host-side) paths matching `pattern`, sorted naturally (cpu2 before cpu10)."""
        found = glob.glob(self.path(pattern))
        key = [(len(p), p) for p in found]
        return [os.sep + os.path.relpath(p, self.root) for _, p in sorted(key)]

    def capabilities(self) -> int | None:
        for line in (self.read("/proc/self/status") or "").splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
        return None


# ------------------------------------------------------------------ ONNX Runtime

def check_ort(host: Host, ort_library: str | None) -> tuple[Check, dict | None]:
    name = "onnxruntime"
    fix = ("pip install onnxruntime (or onnxruntime-gpu; on a Jetson the JetPack build), or set "
           "OAT_EDGE_ORT_LIBRARY=/path/to/libonnxruntime.so")
    try:
        path = find_ort_library(ort_library)
        info = host.probe_ort(path)
    except Exception as exc:  # RuntimeLoadError (named path missing) or OSError (does not load)
        return Check(name, "fail", str(exc), fix), None
    where = info["path"]
    if info.get("api") is None:
        return Check(name, "fail", f"{info['version']} at {where} is too old: oat_edge needs "
                     f">= 1.{ort_probe.MIN_API} (C API {ort_probe.MIN_API})", fix), None
    return Check(name, "pass", f"{info['version']} (C API {info['api']}) at {where}"), info


def check_providers(ort: dict | None, device: str) -> Check:
    name = "execution providers"
    if ort is None:
        return Check(name, "fail", "unknown: no usable ONNX Runtime library (see above)",
                     "fix the onnxruntime line first")
    avail = ort["providers"]
    short = ", ".join(p.replace("ExecutionProvider", "") for p in avail) or "none"
    want = PROVIDER_OF_DEVICE[device]
    if want not in avail:
        return Check(name, "fail", f"available: {short}; --device {device} needs {want}, which this "
                     "library lacks", "install onnxruntime-gpu (CUDA 12, matching cuDNN) or the JetPack "
                     "ONNX Runtime and point OAT_EDGE_ORT_LIBRARY at it; or run with --device cpu")
    gpu = [d for d, p in PROVIDER_OF_DEVICE.items() if d != "cpu" and p in avail]
    hint = f" (also available: --device {' / '.join(gpu)})" if device == "cpu" and gpu else ""
    return Check(name, "pass", f"available: {short}; the bundle would run on {want}{hint}")


# ------------------------------------------------------------------ privileges

def _has_cap(caps: int | None, bit: int) -> bool:
    return caps is not None and bool(caps >> bit & 1)


def _limit(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def check_rt_priority(host: Host, priority: int) -> Check:
    name = "real-time priority"
    soft, hard = host.getrlimit(resource.RLIMIT_RTPRIO)
    caps = host.capabilities()
    nice = _has_cap(caps, CAP_SYS_NICE)
    detail = f"RLIMIT_RTPRIO {_limit(soft)} (hard {_limit(hard)}), CAP_SYS_NICE {'yes' if nice else 'no'}"
    if nice or soft == resource.RLIM_INFINITY or soft >= priority:
        return Check(name, "pass", f"{detail}: SCHED_FIFO {priority} allowed")
    return Check(name, "fail", f"{detail}: SCHED_FIFO {priority} would be refused",
                 "run under deploy/oat-edge.service (LimitRTPRIO=99), or add '<user> - rtprio 99' to "
                 "/etc/security/limits.conf and log in again")


def check_memlock(host: Host) -> Check:
    name = "memory locking"
    soft, hard = host.getrlimit(resource.RLIMIT_MEMLOCK)
    lock = _has_cap(host.capabilities(), CAP_IPC_LOCK)
    detail = f"RLIMIT_MEMLOCK {_limit(soft)} (hard {_limit(hard)}), CAP_IPC_LOCK {'yes' if lock else 'no'}"
    if lock or soft == resource.RLIM_INFINITY:
        return Check(name, "pass", f"{detail}: --rt-memory locks all memory")
    return Check(name, "warn", f"{detail}: --rt-memory will skip locking (pages may be swapped out)",
                 "LimitMEMLOCK=infinity in the service unit, or '<user> - memlock unlimited' in "
                 "/etc/security/limits.conf")


# ------------------------------------------------------------------ CPU clocks and cores

def _cpu_files(host: Host, leaf: str) -> dict[str, str]:
    out = {}
    for p in host.glob(f"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/{leaf}"):
        value = host.read(p)
        if value is not None:
            out[p.split("/")[5]] = value
    return out


def check_governor(host: Host) -> Check:
    name = "cpu governor"
    govs = _cpu_files(host, "scaling_governor")
    if not govs:
        return Check(name, "pass", "no cpufreq in /sys: the kernel does not scale these clocks "
                     "(fixed clocks or a virtual machine)")
    slow = {c: g for c, g in govs.items() if g != "performance"}
    if not slow:
        return Check(name, "pass", f"performance on all {len(govs)} CPUs")
    shown = ", ".join(f"{c} {g}" for c, g in list(slow.items())[:4]) + (" ..." if len(slow) > 4 else "")
    return Check(name, "warn", f"{len(slow)} of {len(govs)} CPUs not at 'performance' ({shown}): "
                 "frequency changes add latency variance",
                 "sudo cpupower frequency-set -g performance (on a Jetson: sudo jetson_clocks)")


def check_isolated(host: Host) -> Check:
    name = "isolated cores"
    cores = host.read("/sys/devices/system/cpu/isolated")
    if cores:
        return Check(name, "pass", f"{cores} (pin the control process there: taskset -c {cores} ...)")
    return Check(name, "warn", "none: the control thread shares every core with the rest of the system",
                 "add isolcpus=N nohz_full=N rcu_nocbs=N to the kernel command line, reboot, and pin the "
                 "service there (CPUAffinity=N in the unit)")


# ------------------------------------------------------------------ Jetson

def jetson_model(host: Host) -> str | None:
    model = host.read("/proc/device-tree/model") or ""
    if host.read("/etc/nv_tegra_release") is not None or "jetson" in model.lower():
        return model or "NVIDIA Jetson"
    return None


def check_power_mode(host: Host) -> Check:
    name = "jetson power mode"
    out = host.run(["nvpmodel", "-q"])
    if out is None:
        return Check(name, "warn", "nvpmodel -q gave no answer (not installed, or not permitted)",
                     "install nvpmodel (JetPack) and run doctor as a user allowed to query it")
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    mode = next((ln.split(":", 1)[1].strip() for ln in lines if "Power Mode" in ln), "?")
    number = next((ln for ln in lines if ln.isdigit()), "?")
    if "MAXN" in mode.upper() or number == "0":
        return Check(name, "pass", f"{mode} (mode {number})")
    return Check(name, "warn", f"{mode} (mode {number}): not the maximum-performance mode",
                 "sudo nvpmodel -m 0")


def check_jetson_clocks(host: Host) -> Check:
    name = "jetson_clocks"
    lo, hi = _cpu_files(host, "scaling_min_freq"), _cpu_files(host, "scaling_max_freq")
    if not hi:
        return Check(name, "warn", "no cpufreq in /sys: cannot tell", "sudo jetson_clocks")
    floating = [c for c in hi if lo.get(c) != hi[c]]
    if not floating:
        return Check(name, "pass", f"on: minimum = maximum frequency on all {len(hi)} CPUs")
    return Check(name, "warn", f"off: {len(floating)} of {len(hi)} CPUs may clock down",
                 "sudo jetson_clocks (and enable it at boot)")


def check_jtop(host: Host) -> Check:
    name = "jtop telemetry"
    if not host.module_available("jtop"):
        return Check(name, "warn", "jtop not importable: loop telemetry (temperatures, power) is off",
                     "pip install 'oat-edge[jetson]' (jetson-stats, AGPL, kept optional)")
    if not os.path.exists(host.path(JTOP_SOCKET)):
        return Check(name, "warn", f"jtop importable but its service is not running (no {JTOP_SOCKET})",
                     "sudo systemctl enable --now jtop")
    return Check(name, "pass", "jtop importable and its service running")


# ------------------------------------------------------------------ latency

@dataclass
class LatencyProbe:
    p50_ms: float
    p99_ms: float
    iters: int
    tokens: int
    control_hz: float | None = None  # the rate the bundle's training data was recorded at, when it says


def probe_latency(bundle: str, device: str, ort_library: str | None, iters: int,
                  max_tokens: int | None, latency_budget_ms: float | None, threads: int) -> LatencyProbe:
    """p50/p99 of act() (wall time around the call) on the observation that normalizes to 0."""
    from .policy import Policy  # the compiled core: only when a bundle is probed
    pol = Policy(bundle, device=device, threads=threads, ort_library=ort_library)
    info = pol.info  # validated by the runtime: nothing here re-reads the manifest
    obs = info.neutral_observation()  # an array, or a dict of named inputs (cameras)
    k = max_tokens or info.num_tokens
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        pol.act(obs, max_tokens=k, seed=i, latency_budget_ms=latency_budget_ms)
        times.append((time.perf_counter() - t0) * 1e3)
    return LatencyProbe(float(np.percentile(times, 50)), float(np.percentile(times, 99)), iters, k, info.control_hz)


def check_latency(probe: LatencyProbe, hz: float | None) -> Check:
    name = "act() latency"
    trained = probe.control_hz if probe.control_hz and probe.control_hz > 0 else None  # 0: not recorded
    rate, source = (trained, "the rate the bundle was trained for") if trained else (hz, "--hz")
    detail = f"p50 {probe.p50_ms:.2f} ms, p99 {probe.p99_ms:.2f} ms over {probe.iters} calls at k={probe.tokens}"
    if rate is None:
        return Check(name, "warn", f"{detail}; the bundle records no control rate to compare with",
                     "pass the robot's control rate: --hz 50")
    period = 1e3 / rate
    against = f"the {period:.1f} ms period of {rate:g} Hz ({source})"
    fix = ("decode fewer tokens (--max-tokens) or set a latency budget (--latency-budget-ms), use "
           "--device cuda / tensorrt, and fix the clock warnings above")
    if probe.p99_ms <= period:
        return Check(name, "pass", f"{detail}: within {against}")
    if probe.p50_ms <= period:
        return Check(name, "warn", f"{detail}: p99 exceeds {against}", fix)
    return Check(name, "fail", f"{detail}: the median exceeds {against}", fix)


# ------------------------------------------------------------------ all together

def run_checks(host: Host, bundle: str | None = None, *, device: str = "cpu", ort_library: str | None = None,
               rt_priority: int = 50, hz: float | None = None, iters: int = 200,
               max_tokens: int | None = None, latency_budget_ms: float | None = None,
               threads: int = 1) -> list[Check]:
    ort_check, ort = check_ort(host, ort_library)
    checks = [ort_check, check_providers(ort, device), check_rt_priority(host, rt_priority),
              check_memlock(host), check_governor(host), check_isolated(host)]
    model = jetson_model(host)
    if model:
        checks += [Check("jetson", "pass", model), check_power_mode(host), check_jetson_clocks(host),
                   check_jtop(host)]
    else:
        checks.append(Check("jetson", "skip", "not a Jetson (no /etc/nv_tegra_release, no Jetson "
                            "device-tree model): power mode and clock checks skipped"))
    if bundle is None:
        checks.append(Check("act() latency", "skip", "no BUNDLE given: oat-edge doctor BUNDLE probes it"))
    elif ort is None or ort_check.status == "fail" or checks[1].status == "fail":
        checks.append(Check("act() latency", "fail", "not measured: the runtime cannot load (see above)",
                            "fix the lines above"))
    else:
        try:
            probe = probe_latency(bundle, device, ort_library, iters, max_tokens, latency_budget_ms, threads)
            checks.append(check_latency(probe, hz))
        except Exception as exc:  # a bad bundle or option: reported on its line, the rest still stands
            checks.append(Check("act() latency", "fail", f"{type(exc).__name__}: {exc}",
                                "check the bundle with oat-edge inspect BUNDLE"))
    return checks


def ready(checks: list[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)


def report(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps({"ready": ready(checks), "checks": [asdict(c) for c in checks]}, indent=2)
    verdict = ("ready: no check failed" if ready(checks) else
               f"NOT ready: {sum(c.status == 'fail' for c in checks)} check(s) failed")
    return "\n".join([c.line() for c in checks] + [verdict])
