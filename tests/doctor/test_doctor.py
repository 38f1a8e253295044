"""oat-edge doctor: each check's pass and fail path on a faked machine (files under a temp root,
faked limits and commands), the verdict and exit status, and one real latency probe."""

import json
import os
import resource

import pytest
from oat_edge import doctor
from oat_edge.doctor import Check, Host, LatencyProbe

INF = resource.RLIM_INFINITY
CPU_ORT = {"path": "/opt/ort/libonnxruntime.so.1.32.0", "version": "1.32.0", "api": 32,
           "providers": ["CPUExecutionProvider"]}


def make_host(tmp_path, files=None, limits=None, commands=None, modules=(), ort=CPU_ORT):
    for rel, text in (files or {}).items():
        p = tmp_path / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    lim = {resource.RLIMIT_RTPRIO: (0, 0), resource.RLIMIT_MEMLOCK: (8 << 20, 8 << 20), **(limits or {})}

    def probe(path):
        if isinstance(ort, Exception):
            raise ort
        return ort

    return Host(root=str(tmp_path), getrlimit=lambda r: lim[r],
                run=lambda cmd: (commands or {}).get(cmd[0]), module_available=lambda m: m in modules,
                probe_ort=probe)


def caps(*bits):
    return {"/proc/self/status": f"Name:\tx\nCapEff:\t{sum(1 << b for b in bits):016x}\n"}


def cpus(n, **leaves):
    return {f"/sys/devices/system/cpu/cpu{i}/cpufreq/{leaf}": (v[i] if isinstance(v, list) else v)
            for i in range(n) for leaf, v in leaves.items()}


# ------------------------------------------------------------------ ONNX Runtime

def test_ort_check_passes_with_version_api_and_path(tmp_path):
    c, info = doctor.check_ort(make_host(tmp_path), None)
    assert c.status == "pass" and info == CPU_ORT
    assert "1.32.0 (C API 32) at /opt/ort/libonnxruntime.so.1.32.0" in c.detail


def test_ort_check_fails_when_no_library_loads(tmp_path):
    c, info = doctor.check_ort(make_host(tmp_path, ort=OSError("no ONNX Runtime library loads: x")), None)
    assert c.status == "fail" and info is None
    assert "no ONNX Runtime library loads" in c.detail and "pip install onnxruntime" in c.fix


def test_ort_check_fails_for_a_named_library_that_does_not_exist(tmp_path):
    c, _ = doctor.check_ort(make_host(tmp_path), str(tmp_path / "nope.so"))
    assert c.status == "fail" and "does not exist" in c.detail


def test_ort_check_fails_for_a_library_older_than_the_core_needs(tmp_path):
    old = dict(CPU_ORT, version="1.10.0", api=None, providers=[])
    c, info = doctor.check_ort(make_host(tmp_path, ort=old), None)
    assert c.status == "fail" and info is None and "needs >= 1.21" in c.detail


def test_providers_pass_on_cpu_and_name_the_gpu_ones_available():
    gpu = dict(CPU_ORT, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    c = doctor.check_providers(gpu, "cpu")
    assert c.status == "pass" and "would run on CPUExecutionProvider" in c.detail
    assert "--device cuda / tensorrt" in c.detail
    assert doctor.check_providers(gpu, "tensorrt").status == "pass"


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_providers_fail_when_the_device_needs_a_provider_the_library_lacks(device):
    c = doctor.check_providers(CPU_ORT, device)
    assert c.status == "fail" and "lacks" in c.detail and "onnxruntime-gpu" in c.fix


def test_providers_fail_without_a_library():
    assert doctor.check_providers(None, "cpu").status == "fail"


# ------------------------------------------------------------------ privileges

def test_rt_priority_passes_with_an_rtprio_limit_or_cap_sys_nice(tmp_path):
    assert doctor.check_rt_priority(make_host(tmp_path, limits={resource.RLIMIT_RTPRIO: (99, 99)}), 50).status == "pass"
    c = doctor.check_rt_priority(make_host(tmp_path, files=caps(doctor.CAP_SYS_NICE)), 50)
    assert c.status == "pass" and "CAP_SYS_NICE yes" in c.detail


def test_rt_priority_fails_below_the_requested_priority_without_the_capability(tmp_path):
    host = make_host(tmp_path, files=caps(doctor.CAP_IPC_LOCK), limits={resource.RLIMIT_RTPRIO: (10, 10)})
    c = doctor.check_rt_priority(host, 50)
    assert c.status == "fail" and "RLIMIT_RTPRIO 10" in c.detail and "CAP_SYS_NICE no" in c.detail
    assert "LimitRTPRIO=99" in c.fix


def test_memlock_passes_unlimited_or_with_cap_ipc_lock(tmp_path):
    c = doctor.check_memlock(make_host(tmp_path, limits={resource.RLIMIT_MEMLOCK: (INF, INF)}))
    assert c.status == "pass" and "unlimited" in c.detail
    assert doctor.check_memlock(make_host(tmp_path, files=caps(doctor.CAP_IPC_LOCK))).status == "pass"


def test_memlock_warns_under_a_finite_limit(tmp_path):
    c = doctor.check_memlock(make_host(tmp_path, files=caps(doctor.CAP_SYS_NICE)))
    assert c.status == "warn" and f"RLIMIT_MEMLOCK {8 << 20}" in c.detail and "LimitMEMLOCK=infinity" in c.fix


# ------------------------------------------------------------------ clocks and cores

def test_governor_passes_at_performance_or_without_cpufreq(tmp_path):
    assert doctor.check_governor(make_host(tmp_path / "a", cpus(4, scaling_governor="performance"))).status == "pass"
    c = doctor.check_governor(make_host(tmp_path / "b"))
    assert c.status == "pass" and "no cpufreq" in c.detail


def test_governor_warns_and_names_the_cpus_that_scale(tmp_path):
    host = make_host(tmp_path, cpus(12, scaling_governor=["performance"] * 10 + ["schedutil", "powersave"]))
    c = doctor.check_governor(host)
    assert c.status == "warn" and "2 of 12 CPUs" in c.detail
    assert "cpu10 schedutil, cpu11 powersave" in c.detail and "cpupower" in c.fix


def test_isolated_cores_pass_when_listed_and_warn_when_none(tmp_path):
    c = doctor.check_isolated(make_host(tmp_path / "a", {"/sys/devices/system/cpu/isolated": "2-3\n"}))
    assert c.status == "pass" and "taskset -c 2-3" in c.detail
    c = doctor.check_isolated(make_host(tmp_path / "b", {"/sys/devices/system/cpu/isolated": "\n"}))
    assert c.status == "warn" and "isolcpus" in c.fix


# ------------------------------------------------------------------ Jetson

def test_jetson_detected_by_tegra_release_or_device_tree_model(tmp_path):
    assert doctor.jetson_model(make_host(tmp_path / "a", {"/etc/nv_tegra_release": "# R36 (release)"}))
    model = doctor.jetson_model(make_host(tmp_path / "b", {"/proc/device-tree/model": "NVIDIA Jetson AGX Orin\0"}))
    assert model == "NVIDIA Jetson AGX Orin"
    assert doctor.jetson_model(make_host(tmp_path / "c", {"/proc/device-tree/model": "Raspberry Pi 5"})) is None


def test_power_mode_passes_at_maxn_and_warns_otherwise(tmp_path):
    c = doctor.check_power_mode(make_host(tmp_path, commands={"nvpmodel": "NV Power Mode: MAXN\n0\n"}))
    assert c.status == "pass" and "MAXN (mode 0)" in c.detail
    c = doctor.check_power_mode(make_host(tmp_path, commands={"nvpmodel": "NV Power Mode: 15W\n2\n"}))
    assert c.status == "warn" and c.fix == "sudo nvpmodel -m 0"
    assert doctor.check_power_mode(make_host(tmp_path)).status == "warn"  # nvpmodel missing


def test_jetson_clocks_on_when_min_equals_max_frequency(tmp_path):
    on = make_host(tmp_path / "a", cpus(2, scaling_min_freq="2201600", scaling_max_freq="2201600"))
    assert doctor.check_jetson_clocks(on).status == "pass"
    off = make_host(tmp_path / "b", cpus(2, scaling_min_freq=["115200", "2201600"], scaling_max_freq="2201600"))
    c = doctor.check_jetson_clocks(off)
    assert c.status == "warn" and "1 of 2 CPUs" in c.detail and "jetson_clocks" in c.fix


def test_jtop_passes_only_when_importable_and_its_service_runs(tmp_path):
    assert doctor.check_jtop(make_host(tmp_path / "a")).fix.startswith("pip install 'oat-edge[jetson]'")
    c = doctor.check_jtop(make_host(tmp_path / "b", modules=("jtop",)))
    assert c.status == "warn" and "systemctl" in c.fix
    assert doctor.check_jtop(make_host(tmp_path / "c", {doctor.JTOP_SOCKET: ""}, modules=("jtop",))).status == "pass"


def test_jetson_lines_appear_only_on_a_jetson(tmp_path):
    names = [c.name for c in doctor.run_checks(make_host(tmp_path / "a"))]
    assert "jetson power mode" not in names and names.count("jetson") == 1
    jetson = make_host(
        tmp_path / "b", {"/etc/nv_tegra_release": "R36"}, commands={"nvpmodel": "NV Power Mode: MAXN\n0"})
    names = [c.name for c in doctor.run_checks(jetson)]
    assert {"jetson power mode", "jetson_clocks", "jtop telemetry"} <= set(names)


# ------------------------------------------------------------------ latency

@pytest.mark.parametrize("p50,p99,status", [(3.0, 8.0, "pass"), (3.0, 30.0, "warn"), (25.0, 30.0, "fail")])
def test_latency_compared_with_the_control_period(p50, p99, status):
    c = doctor.check_latency(LatencyProbe(p50, p99, 200, 8, None), hz=50)
    assert c.status == status and "20.0 ms period of 50 Hz (--hz)" in c.detail


def test_latency_prefers_the_rate_the_bundle_was_trained_for():
    c = doctor.check_latency(LatencyProbe(3.0, 8.0, 200, 8, 200.0), hz=50)
    assert c.status == "warn" and "5.0 ms period of 200 Hz (the rate the bundle was trained for)" in c.detail


def test_latency_without_any_rate_warns_and_asks_for_hz():
    c = doctor.check_latency(LatencyProbe(3.0, 8.0, 200, 8, None), hz=None)
    assert c.status == "warn" and "--hz" in c.fix


def test_latency_ignores_a_recorded_rate_of_zero():
    c = doctor.check_latency(LatencyProbe(3.0, 8.0, 200, 8, 0.0), hz=50)
    assert "(--hz)" in c.detail


def test_real_latency_probe_on_the_tiny_bundle(tiny_bundle):
    probe = doctor.probe_latency(tiny_bundle, "cpu", None, iters=20, max_tokens=2, latency_budget_ms=None, threads=1)
    assert 0 < probe.p50_ms <= probe.p99_ms and probe.tokens == 2 and probe.iters == 20
    assert probe.control_hz is None  # the tiny bundle records no rate


def test_latency_probe_reads_the_recorded_rate_from_policy_info(tiny_bundle, tmp_path, edit_manifest):
    import shutil

    bundle = str(tmp_path / "at_80hz")
    shutil.copytree(tiny_bundle, bundle)
    edit_manifest(bundle, lambda d: d.update(control_hz=80.0))
    probe = doctor.probe_latency(bundle, "cpu", None, iters=5, max_tokens=1, latency_budget_ms=None, threads=1)
    assert probe.control_hz == 80.0
    assert "12.5 ms period of 80 Hz (the rate the bundle was trained for)" in doctor.check_latency(probe, 50).detail


def test_latency_probe_runs_a_camera_bundle_with_named_inputs(tmp_path):
    pytest.importorskip("torch")
    from tiny_pixel_bundle import write_tiny_pixel_bundle

    bundle = write_tiny_pixel_bundle(tmp_path / "pixel", cameras=("corner",), size=16)
    probe = doctor.probe_latency(bundle, "cpu", None, iters=5, max_tokens=2, latency_budget_ms=None, threads=1)
    assert 0 < probe.p50_ms <= probe.p99_ms and probe.tokens == 2


# ------------------------------------------------------------------ verdict, output, CLI

def test_verdict_fails_on_any_fail_but_not_on_warnings():
    assert doctor.ready([Check("a", "pass", ""), Check("b", "warn", "", "x"), Check("c", "skip", "")])
    assert not doctor.ready([Check("a", "pass", ""), Check("b", "fail", "", "x")])


def test_text_report_shows_the_fix_and_json_report_parses():
    checks = [Check("a", "pass", "fine", "unused"), Check("b", "fail", "broken", "do this")]
    text = doctor.report(checks, as_json=False).splitlines()
    assert text[0] == "[pass] a: fine" and text[1] == "[fail] b: broken  -> fix: do this"
    assert text[-1].startswith("NOT ready")
    data = json.loads(doctor.report(checks, as_json=True))
    assert data["ready"] is False and data["checks"][1] == {"name": "b", "status": "fail", "detail": "broken",
                                                           "fix": "do this"}


def test_latency_not_probed_when_the_runtime_cannot_load(tmp_path):
    checks = doctor.run_checks(make_host(tmp_path, ort=OSError("nothing")), "any/bundle")
    assert checks[-1].name == "act() latency" and checks[-1].status == "fail" and "cannot load" in checks[-1].detail


def test_cli_doctor_on_this_machine_reports_every_check_as_json(capsys, tiny_bundle):
    from oat_edge.cli import main
    rc = main(["doctor", tiny_bundle, "--json", "--iters", "5", "--hz", "1"])
    data = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in data["checks"]]
    assert names[:6] == ["onnxruntime", "execution providers", "real-time priority", "memory locking",
                         "cpu governor", "isolated cores"]
    assert data["checks"][0]["status"] == "pass"  # the real library of this venv
    assert names[-1] == "act() latency" and data["checks"][-1]["status"] in ("pass", "warn")
    assert rc == (0 if data["ready"] else 1) and all(c["status"] in doctor.STATUSES for c in data["checks"])


def test_cli_doctor_fails_for_a_missing_named_library(capsys, tmp_path):
    from oat_edge.cli import main
    rc = main(["doctor", "--ort-library", str(tmp_path / "missing.so")])
    out = capsys.readouterr().out
    assert rc == 1 and "[fail] onnxruntime" in out and "NOT ready" in out


def test_host_reads_real_proc_status():
    assert Host().capabilities() is not None or not os.path.exists("/proc/self/status")
