import time

from oat_edge.control.telemetry import Telemetry, parse_jtop_stats


class FakeJtop:
    """Mimics jetson-stats' jtop object: start/ok/stats/close."""

    def __init__(self, ok=True):
        self._ok, self.closed, self.n = ok, False, 0

    def start(self):
        pass

    def ok(self):
        return self._ok

    @property
    def stats(self):
        self.n += 1
        return {"time": "x", "CPU1": 10, "CPU2": 30, "CPU3": "OFF", "GPU": 55.0,
                "Temp CPU": 41.5, "Temp GPU": 40.0, "Power TOT": 7100, "Power VDD_CPU_GPU_CV": 2300,
                "jetson_clocks": "OFF", "nvp model": "MAXN", "sample": self.n}

    def close(self):
        self.closed = True


def test_without_jtop_fields_are_absent_and_nothing_crashes(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_jtop(name, *a, **k):
        if name == "jtop":
            raise ImportError("No module named 'jtop'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_jtop)
    with Telemetry() as t:
        assert not t.available
        assert t.latest() == {}


def test_with_fake_jtop_latest_values_are_sampled_in_background():
    fake = FakeJtop()
    with Telemetry(jtop_factory=lambda: fake, interval_s=0.01) as t:
        assert t.available
        first = t.latest()
        time.sleep(0.1)
        assert fake.n > 1  # the background thread kept sampling
    assert fake.closed
    assert first["cpu_load_pct"] == 20.0 and first["gpu_load_pct"] == 55.0
    assert first["temp_cpu_c"] == 41.5 and first["power_total_mw"] == 7100
    assert first["power_vdd_cpu_gpu_cv_mw"] == 2300


def test_jtop_service_down_means_no_telemetry_and_a_recorded_reason():
    t = Telemetry(jtop_factory=lambda: FakeJtop(ok=False)).start()
    assert not t.available and "not responding" in t.error and t.latest() == {}
    t.stop()


def test_parse_ignores_non_numeric_fields():
    assert parse_jtop_stats({"GPU": "OFF", "Temp AUX": "n/a", "CPU1": "OFF"}) == {}
